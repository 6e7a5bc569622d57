package gen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Churner changes endpoints of stored EndpointSlices: each change gives one
// endpoint a fresh address (its Pod replaced, hostname kept), one Update of
// its slice. Safe for concurrent use; changes of one slice are serialized.
type Churner struct {
	client kubernetes.Interface
	spec   Spec
	slots  []*slot
	nextIP atomic.Uint32
}

type slot struct {
	mu sync.Mutex
	es *discoveryv1.EndpointSlice // as last stored
}

// NewChurner takes the slices Load returned (as they are stored) and hands
// out addresses of spec.PodCIDR from o.NextPodIP on.
func NewChurner(c kubernetes.Interface, spec Spec, o Objects, stored []*discoveryv1.EndpointSlice) *Churner {
	ch := &Churner{client: c, spec: spec, slots: make([]*slot, len(stored))}
	for i, es := range stored {
		ch.slots[i] = &slot{es: es}
	}
	ch.nextIP.Store(o.NextPodIP)
	return ch
}

// Len is the number of slices.
func (c *Churner) Len() int { return len(c.slots) }

// Slice returns slice i as last stored; it must not be modified.
func (c *Churner) Slice(i int) *discoveryv1.EndpointSlice {
	s := c.slots[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.es
}

// Change gives endpoint ep of slice i a fresh address and stores the slice;
// it returns the new address. start, if not nil, is called right before the
// write is sent (for latency measurements that include the API server).
func (c *Churner) Change(ctx context.Context, i, ep int, start func()) (netip.Addr, error) {
	s := c.slots[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	n := c.nextIP.Add(1) - 1
	a := c.spec.PodIP(n)
	for attempt := 0; ; attempt++ {
		es := s.es.DeepCopy()
		e := &es.Endpoints[ep%len(es.Endpoints)]
		e.Addresses = []string{a.String()}
		if e.TargetRef != nil && e.Hostname == nil {
			e.TargetRef.Name = PodName(es.Labels[discoveryv1.LabelServiceName], n)
		}
		if start != nil {
			start()
		}
		got, err := c.client.DiscoveryV1().EndpointSlices(es.Namespace).Update(ctx, es, metav1.UpdateOptions{})
		if err == nil {
			s.es = got
			return a, nil
		}
		if !apierrors.IsConflict(err) || attempt > 0 {
			return netip.Addr{}, fmt.Errorf("update endpointslice %s/%s: %w", es.Namespace, es.Name, err)
		}
		// Someone else wrote it (or our last write's answer was lost): once
		// more on top of what is stored.
		cur, gerr := c.client.DiscoveryV1().EndpointSlices(es.Namespace).Get(ctx, es.Name, metav1.GetOptions{})
		if gerr != nil {
			return netip.Addr{}, fmt.Errorf("update endpointslice %s/%s: %w (and get: %v)", es.Namespace, es.Name, err, gerr)
		}
		s.es = cur
	}
}

// ChurnStats counts what Run did.
type ChurnStats struct {
	Changes  int           // endpoint changes stored
	Errors   int           // failed writes
	Late     int           // changes sent more than 100 ms after their slot in the schedule
	Duration time.Duration // from the first scheduled change to the end
	// FirstErr is the first write error, if any.
	FirstErr error
}

// Rate is the achieved rate of changes per second.
func (s ChurnStats) Rate() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Changes) / s.Duration.Seconds()
}

// Run changes one random endpoint of a random slice among pick (indexes
// into the slices; nil means all) at rate changes per second, on workers
// goroutines, until ctx ends. Changes follow a fixed schedule (one every
// 1/rate seconds), so a slow write delays the next ones without lowering
// the rate, as long as the workers keep up.
func (c *Churner) Run(ctx context.Context, rate float64, workers int, pick []int, seed uint64) ChurnStats {
	if pick == nil {
		pick = make([]int, len(c.slots))
		for i := range pick {
			pick[i] = i
		}
	}
	if rate <= 0 || len(pick) == 0 {
		<-ctx.Done()
		return ChurnStats{}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5ca1e))
	type job struct{ slice, ep int }
	jobs := make(chan job)
	var (
		mu    sync.Mutex
		stats ChurnStats
		wg    sync.WaitGroup
	)
	for range max(workers, 1) {
		wg.Go(func() {
			for j := range jobs {
				_, err := c.Change(ctx, j.slice, j.ep, nil)
				mu.Lock()
				if err == nil {
					stats.Changes++
				} else if ctx.Err() == nil {
					stats.Errors++
					if stats.FirstErr == nil {
						stats.FirstErr = err
					}
				}
				mu.Unlock()
			}
		})
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	late := 0
loop:
	for k := 0; ; k++ {
		due := start.Add(time.Duration(k) * interval)
		t.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
		}
		j := job{slice: pick[rng.IntN(len(pick))], ep: rng.IntN(1 << 16)}
		select {
		case jobs <- j:
		case <-ctx.Done():
			break loop
		}
		if time.Since(due) > 100*time.Millisecond {
			late++
		}
	}
	close(jobs)
	wg.Wait()
	stats.Duration = time.Since(start)
	stats.Late = late
	return stats
}
