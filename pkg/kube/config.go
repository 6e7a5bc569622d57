package kube

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"log/slog"

	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// PodScope says which Pods are watched.
type PodScope int

const (
	// PodsNone watches no Pods (pod records in insecure or disabled mode, no
	// autopath).
	PodsNone PodScope = iota
	// PodsNode watches the Pods of Config.NodeName only (field selector
	// spec.nodeName), enough for autopath.
	PodsNode
	// PodsAll watches every Pod of the cluster, as pods verified mode needs.
	PodsAll
)

func (s PodScope) String() string {
	switch s {
	case PodsNone:
		return "none"
	case PodsNode:
		return "node"
	case PodsAll:
		return "all"
	}
	return fmt.Sprintf("PodScope(%d)", int(s))
}

// Config is fixed for the life of a Watcher.
type Config struct {
	// Client talks to the API server (NewClient). Required.
	Client Client
	// Resync is the informers' resync period; 0 (the sensible value here)
	// disables resyncs: the handlers keep nothing that could drift.
	Resync time.Duration
	// PodScope selects the Pods watched; PodsNode needs NodeName.
	PodScope PodScope
	NodeName string
	// Logger receives watch errors and odd objects; nil means slog.Default().
	Logger *slog.Logger
	// OnWatchError, if set, is called for every list or watch failure of
	// every informer (each is retried; see retry.go), with the resource
	// ("services", "endpointslices", "namespaces", "pods"). It runs on the informer's goroutine and must return quickly; meant
	// for a metrics counter.
	OnWatchError func(resource string, err error)
	// Now is the clock used to rate-limit log lines; nil means time.Now.
	Now func() time.Time
	// DropPodNames drops the targetRef Pod names of endpoints at ingest:
	// only zone.Config.EndpointPodNames uses them, and a large cluster
	// holds one per endpoint.
	DropPodNames bool
}

// SetWatchList turns client-go's streaming list (its WatchListClient
// feature, KEP-3157) on or off for the whole process. On, informers get
// their initial list, and every relist after an API server restart or a
// watch that fell too far behind, as a watch that streams the objects one
// by one into the informer's transform, instead of one response that is
// decoded whole, so a relist does not briefly hold every full object next
// to the slim ones (measured in BENCHMARKS.md, "Large clusters"). API
// servers without the WatchList feature (beta, and on by default in 1.34,
// the version the tests run) make client-go fall back to a plain list.
//
// Call it before any client-go client is made: client-go logs an error when
// its feature gates are replaced after their first use.
func SetWatchList(on bool) {
	base := clientfeatures.FeatureGates()
	if g, ok := base.(watchListGate); ok {
		base = g.Gates
	}
	clientfeatures.ReplaceFeatureGates(watchListGate{Gates: base, on: on})
}

// watchListGate answers for WatchListClient and asks the gates it wraps
// about everything else.
type watchListGate struct {
	clientfeatures.Gates
	on bool
}

func (g watchListGate) Enabled(f clientfeatures.Feature) bool {
	if f == clientfeatures.WatchListClient {
		return g.on
	}
	return g.Gates.Enabled(f)
}

// UserAgent is sent to the API server by clients made from RESTConfig.
var UserAgent = userAgent()

func userAgent() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "nodedns/" + v + " (" + runtime.GOOS + "/" + runtime.GOARCH + ")"
}

// RESTConfig loads the client configuration: from kubeconfigPath, or the
// in-cluster service account when kubeconfigPath is empty.
//
// nodedns runs on every node, so its API traffic is multiplied by the node
// count: the config asks for protobuf (cheaper to encode and decode than
// JSON) and keeps client-go's modest default rate limit explicit (the
// informers only list at start-up and after watch failures).
func RESTConfig(kubeconfigPath string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfigPath == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (give a kubeconfig path when running outside a cluster): %w", err)
		}
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfigPath)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfigPath, err)
		}
	}
	cfg.UserAgent = UserAgent
	cfg.QPS = 5
	cfg.Burst = 10
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	return cfg, nil
}
