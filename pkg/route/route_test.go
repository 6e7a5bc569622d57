package route

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// fake is an Upstream that answers with its name; pointers, so they
// compare by identity.
type fake struct {
	name  string
	calls atomic.Int64
	// block, when set, is waited on inside Exchange.
	block chan struct{}
}

func (f *fake) Exchange(ctx context.Context, q []byte) ([]byte, error) {
	f.calls.Add(1)
	if f.block != nil {
		<-f.block
	}
	return []byte(f.name), nil
}

// closing is a fake that holds resources.
type closing struct {
	fake
	closed atomic.Int64
}

func (c *closing) Close() error { c.closed.Add(1); return nil }

func query(t testing.TB, name string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exchange(t testing.TB, r *Router, name string) string {
	t.Helper()
	b, err := r.Exchange(context.Background(), query(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLongestMatchWins(t *testing.T) {
	def, corp, lab, rev := &fake{name: "default"}, &fake{name: "corp"}, &fake{name: "lab"}, &fake{name: "rev"}
	r, err := New(def, map[string]Upstream{
		"corp.example":      corp,
		"Lab.Corp.Example.": lab,
		"10.in-addr.arpa":   rev,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, want string }{
		{"corp.example.", "corp"},
		{"CORP.example.", "corp"},
		{"www.corp.example.", "corp"},
		{"lab.corp.example.", "lab"},
		{"a.b.LAB.corp.example.", "lab"},
		{"xcorp.example.", "default"}, // a label boundary, not a string suffix
		{"example.", "default"},
		{"api.example.com.", "default"},
		{".", "default"},
		{"4.3.2.10.in-addr.arpa.", "rev"},
		{"4.3.2.11.in-addr.arpa.", "default"},
	} {
		if got := exchange(t, r, c.name); got != c.want {
			t.Errorf("%s went to %s, want %s", c.name, got, c.want)
		}
		if got := r.Upstream(c.name).(*fake).name; got != c.want {
			t.Errorf("Upstream(%s) = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestMalformedGoesToDefault(t *testing.T) {
	def, corp := &fake{name: "default"}, &fake{name: "corp"}
	r, _ := New(def, map[string]Upstream{"corp.example": corp})
	q := query(t, "www.corp.example.")
	for _, bad := range [][]byte{
		nil,
		q[:12],
		q[:15],                          // the name cut short
		append(q[:12:12], 0xC0, 0x0C),   // a compression pointer
		append(q[:12:12], 63, 'a', 'b'), // a label longer than the rest
	} {
		b, _ := r.Exchange(context.Background(), bad)
		if string(b) != "default" {
			t.Errorf("%q went to %s, want default", bad, b)
		}
	}
}

func TestUpdateValidates(t *testing.T) {
	def := &fake{name: "default"}
	for name, stubs := range map[string]map[string]Upstream{
		"root":      {".": def},
		"empty":     {"": def},
		"label":     {"a..b": def},
		"nil":       {"corp.example": nil},
		"duplicate": {"corp.example": def, "CORP.example.": def},
	} {
		if _, err := New(def, stubs); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := New(nil, nil); err == nil {
		t.Error("nil default: no error")
	}
}

// TestInFlightFinishOnTheirUpstream: a swap while an exchange is running
// neither cancels nor moves it, and the retired upstream is closed when
// that exchange ends, not before; an upstream kept across the swap is not
// closed at all.
func TestInFlightFinishOnTheirUpstream(t *testing.T) {
	old := &closing{fake: fake{name: "old", block: make(chan struct{})}}
	kept := &closing{fake: fake{name: "kept"}}
	r, err := New(old, map[string]Upstream{"corp.example": kept})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	go func() {
		b, _ := r.Exchange(context.Background(), query(t, "api.example.com."))
		done <- string(b)
	}()
	for old.calls.Load() == 0 {
		runtime.Gosched() // until the exchange is inside old
	}
	next := &closing{fake: fake{name: "next"}}
	if err := r.Update(next, map[string]Upstream{"corp.example": kept}); err != nil {
		t.Fatal(err)
	}
	if got := exchange(t, r, "api.example.com."); got != "next" {
		t.Errorf("after the swap: %s, want next", got)
	}
	if old.closed.Load() != 0 {
		t.Fatal("old closed while an exchange was still using it")
	}
	close(old.block)
	if got := <-done; got != "old" {
		t.Errorf("in-flight exchange answered by %s, want old", got)
	}
	if n := old.closed.Load(); n != 1 {
		t.Errorf("old closed %d times, want once after its last exchange", n)
	}
	if kept.closed.Load() != 0 {
		t.Error("an upstream still in the table was closed")
	}
	// Idle and retired: closed at once.
	if err := r.Update(next, nil); err != nil {
		t.Fatal(err)
	}
	if kept.closed.Load() != 1 {
		t.Error("idle retired upstream not closed")
	}
}

// TestConcurrentSwapsLoseNothing: exchanges racing with updates always get
// an answer from an upstream that was in the table, and every retired
// closer is closed exactly once (run with -race).
func TestConcurrentSwapsLoseNothing(t *testing.T) {
	first := &closing{fake: fake{name: "u0"}}
	r, err := New(first, map[string]Upstream{"corp.example": first})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var failures atomic.Int64
	q1, q2 := query(t, "api.example.com."), query(t, "www.corp.example.")
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, q := range [][]byte{q1, q2} {
					if b, err := r.Exchange(context.Background(), q); err != nil || len(b) == 0 {
						failures.Add(1)
					}
				}
			}
		}()
	}
	all := []*closing{first}
	for i := range 200 {
		u := &closing{fake: fake{name: "u"}}
		all = append(all, u)
		stubs := map[string]Upstream{"corp.example": u}
		if i%2 == 0 {
			stubs["corp.example"] = all[len(all)-2] // keep one across a swap now and then
		}
		if err := r.Update(u, stubs); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d failed exchanges", n)
	}
	last := all[len(all)-1]
	for i, u := range all {
		want := int64(1)
		if u == last {
			want = 0
		}
		if got := u.closed.Load(); got != want {
			t.Errorf("upstream %d closed %d times, want %d", i, got, want)
		}
	}
}

func TestUnder(t *testing.T) {
	under := Under([]string{"corp.example", "10.in-addr.arpa.", "bad..name"})
	wire := func(s string) []byte {
		b := make([]byte, 255)
		n, err := dns.PackDomainName(s, b, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return b[:n]
	}
	for name, want := range map[string]bool{
		"corp.example.":          true,
		"www.corp.example.":      true,
		"xcorp.example.":         false,
		"example.":               false,
		"1.2.3.10.in-addr.arpa.": true,
		".":                      false,
	} {
		if got := under(wire(name)); got != want {
			t.Errorf("Under(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	r, _ := New(&fake{name: "default"}, map[string]Upstream{"corp.example": &fake{name: "corp"}, "a.b.c.d.e": &fake{}})
	q := query(t, "www.lab.CORP.example.")
	if n := testing.AllocsPerRun(100, func() {
		if r.cur.Load().pick(q).up.(*fake).name != "corp" {
			t.Fatal("wrong route")
		}
	}); n != 0 {
		t.Errorf("pick: %v allocs, want 0", n)
	}
	c := &closing{fake: fake{name: "c"}}
	r2, _ := New(c, map[string]Upstream{"corp.example": c})
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { r2.Exchange(ctx, q) }); n > 1 {
		// the fake's []byte(name) is the one allocation
		t.Errorf("Exchange with counting: %v allocs, want at most the fake's 1", n)
	}
}

func BenchmarkPick(b *testing.B) {
	r, _ := New(&fake{name: "default"}, map[string]Upstream{"corp.example": &fake{name: "corp"}, "10.in-addr.arpa": &fake{}})
	for _, name := range []string{"api.example.com.", "www.lab.corp.example."} {
		b.Run(name, func(b *testing.B) {
			q := query(b, name)
			b.ReportAllocs()
			for b.Loop() {
				r.cur.Load().pick(q)
			}
		})
	}
}

// static answers with a fixed slice: no allocation, so the benchmark
// shows the Router's own cost.
type static struct{ reply []byte }

func (s *static) Exchange(context.Context, []byte) ([]byte, error) { return s.reply, nil }

type staticCloser struct{ static }

func (*staticCloser) Close() error { return nil }

// BenchmarkRouterExchange: the cost a Router adds in front of an upstream,
// without and with in-flight counting (an upstream that needs Close).
func BenchmarkRouterExchange(b *testing.B) {
	ctx := context.Background()
	q := query(b, "www.lab.corp.example.")
	for _, c := range []struct {
		name string
		up   Upstream
	}{{"plain", &static{reply: []byte("x")}}, {"closer", &staticCloser{static{reply: []byte("x")}}}} {
		r, _ := New(c.up, map[string]Upstream{"corp.example": c.up, "10.in-addr.arpa": c.up})
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Exchange(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/direct", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.up.Exchange(ctx, q)
			}
		})
	}
}
