package zonefile

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the zone-file parser: it must never
// panic, and an *Error must point at a line of the input.
func FuzzLoad(f *testing.F) {
	if ex, err := os.ReadFile("../../examples/zone.yaml"); err == nil {
		f.Add(ex)
	}
	for _, s := range []string{
		"",
		"---\n---\n...\n",
		"apiVersion: v1\nkind: List\nitems:\n- kind: Service\n  metadata: {name: a}\n  spec: {clusterIP: None, ports: [{port: x}]}\n",
		"kind: ServiceList\nitems: [{metadata: {name: a}}, 3, null]\n",
		"kind: List\nitems:\n- kind: List\n  items:\n  - kind: List\n    items: [{kind: List, items: [{kind: List, items: []}]}]\n",
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, labels: {kubernetes.io/service-name: s}}\naddressType: IPv6\nendpoints: [{addresses: ['::1'], hostname: h}]\nports: [{}]\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: b}}\nspec: {hostname: h, subdomain: s}\nstatus: {podIPs: [{ip: 10.0.0.1}, {ip: 'fd00::1'}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {a: b}, clusterIP: None, ports: [{name: p, port: 1, targetPort: x}]}\n",
		"a: &a [*a]\n",
		"- - - -\n",
		"--- !!str\n--- |\n  x\n",
		"kind: Service\nmetadata:\n  name: a\n\tb: c\n",
		"{\"kind\": \"Namespace\", \"metadata\": {\"name\": \"x\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, err := Parse("fuzz.yaml", data)
		var ze *Error
		if errors.As(err, &ze) {
			// YAML breaks lines at \n, \r\n and a lone \r alike.
			lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) -
				bytes.Count(data, []byte("\r\n")) + 1
			if ze.Line < 1 || ze.Line > lines+1 {
				t.Fatalf("error at line %d of a %d-line input: %v", ze.Line, lines, err)
			}
		}
	})
}
