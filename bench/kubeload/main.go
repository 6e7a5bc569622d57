// Command kubeload makes the cluster data of the side-by-side benchmark
// (bench/compare.sh): one set of Services and EndpointSlices, written
//
//   - as a zone file for nodedns --zone-file (-zone-out),
//   - as a dnsperf query file of every Service name (-queries-out),
//   - and, unless -no-api, into a real kube-apiserver + etcd started with
//     package kubeenv, so CoreDNS's kubernetes plugin (and nodedns
//     --kubeconfig) read the very same objects.
//
// With the API server it writes KEY=VALUE lines (ADMIN_KUBECONFIG,
// DNS_KUBECONFIG, API_SERVER) to -ready-file once every object is stored,
// then waits for SIGTERM or SIGINT and stops kube-apiserver and etcd.
//
// The data: namespace "bench" with -services Services svc-0001, svc-0002, …
// Every -headless-every'th one is headless with -endpoints ready endpoints in
// one EndpointSlice; the others are ClusterIP Services with a fixed
// clusterIP in 10.96.1.0 and up. Each has one named port (http 80/TCP).
// The zone file also holds default/kubernetes (10.96.0.1, https 443/TCP),
// which the API server creates by itself, so both sources hold the same set.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/nodedns/nodedns/pkg/zonefile"
	"github.com/nodedns/nodedns/test/e2e/kubeenv"
)

const (
	namespace = "bench"
	managedBy = "nodedns-bench"
)

type config struct {
	services      int
	headlessEvery int
	endpoints     int
	domain        string
	zoneOut       string
	queriesOut    string
	readyFile     string
	dir           string
	noAPI         bool
}

func main() {
	var c config
	flag.IntVar(&c.services, "services", 1000, "number of Services in namespace "+namespace)
	flag.IntVar(&c.headlessEvery, "headless-every", 10, "every Nth Service is headless (0: none)")
	flag.IntVar(&c.endpoints, "endpoints", 3, "ready endpoints per headless Service")
	flag.StringVar(&c.domain, "cluster-domain", "cluster.local", "cluster domain of the query names")
	flag.StringVar(&c.zoneOut, "zone-out", "", "write the objects as a nodedns zone file here")
	flag.StringVar(&c.queriesOut, "queries-out", "", "write a dnsperf query file (every Service name, type A) here")
	flag.StringVar(&c.readyFile, "ready-file", "", "with the API server: write ADMIN_KUBECONFIG=, DNS_KUBECONFIG=, API_SERVER= here when loaded")
	flag.StringVar(&c.dir, "dir", "", "kubeenv state directory (certs, etcd data, logs); required unless -no-api")
	flag.BoolVar(&c.noAPI, "no-api", false, "only write the files, start no API server")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "kubeload:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.services < 1 || c.services > 250*250 || c.endpoints < 1 || c.headlessEvery < 0 {
		return errors.New("want 1 <= -services <= 62500, -endpoints >= 1, -headless-every >= 0")
	}
	if !c.noAPI && (c.dir == "" || c.readyFile == "") {
		return errors.New("-dir and -ready-file are required unless -no-api")
	}
	svcs, slices := objects(c)
	if c.zoneOut != "" {
		if err := writeZone(c.zoneOut, svcs, slices); err != nil {
			return err
		}
	}
	if c.queriesOut != "" {
		var b bytes.Buffer
		for _, s := range svcs {
			if s.Namespace == namespace {
				fmt.Fprintf(&b, "%s.%s.svc.%s A\n", s.Name, s.Namespace, c.domain)
			}
		}
		if err := writeAtomic(c.queriesOut, b.Bytes()); err != nil {
			return err
		}
	}
	if c.noAPI {
		return nil
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	start := time.Now()
	env, err := kubeenv.Start(ctx, c.dir)
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "kubeload: stop:", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "kubeload: API server %s ready in %v\n", env.APIServerURL, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := load(ctx, env, svcs, slices); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kubeload: %d Services, %d EndpointSlices stored in %v\n", len(svcs)-1, len(slices), time.Since(start).Round(time.Millisecond))
	ready := fmt.Sprintf("ADMIN_KUBECONFIG=%s\nDNS_KUBECONFIG=%s\nAPI_SERVER=%s\n", env.AdminKubeconfig, env.DNSKubeconfig, env.APIServerURL)
	if err := writeAtomic(c.readyFile, []byte(ready)); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// objects returns the Services (default/kubernetes first) and the
// EndpointSlices of the headless ones.
func objects(c config) ([]*corev1.Service, []*discoveryv1.EndpointSlice) {
	tcp := corev1.ProtocolTCP
	svcs := []*corev1.Service{{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"},
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: tcp, TargetPort: intstr.FromInt32(6443)}},
		},
	}}
	var slices []*discoveryv1.EndpointSlice
	headless := 0
	for i := 1; i <= c.services; i++ {
		name := fmt.Sprintf("svc-%04d", i)
		svc := &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: corev1.ServiceSpec{
				Type:  corev1.ServiceTypeClusterIP,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: tcp, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		if c.headlessEvery > 0 && i%c.headlessEvery == 0 {
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
			es := &discoveryv1.EndpointSlice{
				TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
				ObjectMeta: metav1.ObjectMeta{Name: name + "-bench", Namespace: namespace, Labels: map[string]string{
					discoveryv1.LabelServiceName: name,
					discoveryv1.LabelManagedBy:   managedBy,
				}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: &tcp}},
			}
			for j := 0; j < c.endpoints; j++ {
				n := headless*c.endpoints + j // 10.244.0.1, 10.244.0.2, …
				ip := fmt.Sprintf("10.244.%d.%d", n/250%256, n%250+1)
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
					Addresses:  []string{ip},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				})
			}
			headless++
			slices = append(slices, es)
		} else {
			ip := fmt.Sprintf("10.96.%d.%d", 1+i/250, i%250+1) // never 10.96.0.x
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = ip, []string{ip}
		}
		svcs = append(svcs, svc)
	}
	return svcs, slices
}

// writeZone writes a multi-document YAML zone file and checks that
// nodedns's own loader accepts it.
func writeZone(path string, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) error {
	var b bytes.Buffer
	b.WriteString("# Generated by bench/kubeload: the same objects it loads into the API server.\n")
	docs := []any{
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: namespace}},
	}
	for _, s := range svcs {
		docs = append(docs, s)
	}
	for _, s := range slices {
		docs = append(docs, s)
	}
	for i, d := range docs {
		// Through a map, to drop what a hand-written file would not have.
		j, err := json.Marshal(d)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil {
			return err
		}
		delete(m, "status")
		delete(m, "spec") // Namespace only; put back below for Services
		if s, ok := d.(*corev1.Service); ok {
			var spec map[string]any
			sj, _ := json.Marshal(s.Spec)
			if err := json.Unmarshal(sj, &spec); err != nil {
				return err
			}
			m["spec"] = spec
		}
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	if _, _, err := zonefile.Parse(path, b.Bytes()); err != nil {
		return fmt.Errorf("generated zone file does not load: %w", err)
	}
	return writeAtomic(path, b.Bytes())
}

// load creates the namespace, the Services, then the EndpointSlices.
// default/kubernetes already exists.
func load(ctx context.Context, env *kubeenv.Env, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := env.Admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace: %w", err)
	}
	var jobs []func() error
	for _, s := range svcs {
		if s.Namespace != namespace {
			continue
		}
		jobs = append(jobs, func() error {
			_, err := env.Admin.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create service %s/%s: %w", s.Namespace, s.Name, err)
			}
			return nil
		})
	}
	if err := parallel(jobs); err != nil {
		return err
	}
	jobs = jobs[:0]
	for _, es := range slices {
		jobs = append(jobs, func() error {
			_, err := env.Admin.DiscoveryV1().EndpointSlices(es.Namespace).Create(ctx, es, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create endpointslice %s/%s: %w", es.Namespace, es.Name, err)
			}
			return nil
		})
	}
	return parallel(jobs)
}

// parallel runs jobs on 16 workers and returns the first error.
func parallel(jobs []func() error) error {
	ch := make(chan func() error)
	errc := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				if err := j(); err != nil {
					errc <- err
				}
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	close(errc)
	return <-errc // nil when the channel is empty
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kubeload-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
