package zonefile

import (
	"strings"
	"testing"
)

func TestLocate(t *testing.T) {
	doc := `apiVersion: v1
kind: List
items:
- kind: Service
  metadata:
    name: a
    labels:
      "quoted key": x
  spec:
    ports:
    - name: http
      port: 80
    - name: https   # comment
      port: 443
    selector: {app: a}
-   kind: Pod
    status:
      podIPs:
        - ip: 10.0.0.1
        -  ip: 10.0.0.2
`
	marks := scanMarks(doc)
	for _, tt := range []struct {
		path []seg
		line int // 1-based
	}{
		{nil, 1},
		{keys("kind"), 2},
		{join(keys("items"), index(0), key("metadata"), key("name")), 6},
		{join(keys("items"), index(0), key("metadata"), key("labels"), key("quoted key")), 8},
		{join(keys("items"), index(0), key("spec"), key("ports"), index(1), key("port")), 14},
		{join(keys("items"), index(0), key("spec"), key("ports"), index(1), key("name")), 13},
		{join(keys("items"), index(0), key("spec"), key("selector"), key("app")), 15}, // flow: the key's line
		{join(keys("items"), index(1), key("status"), key("podIPs"), index(1), key("ip")), 20},
		{join(keys("items"), index(1), key("kind")), 16},
		{join(keys("items"), index(5), key("kind")), 3},           // no such item: the deepest found
		{join(keys("items"), index(0), key("nope"), key("x")), 4}, // no such key
	} {
		if got := locate(marks, tt.path) + 1; got != tt.line {
			t.Errorf("%s: line %d, want %d", pathString(tt.path), got, tt.line)
		}
	}
}

func TestJSONPath(t *testing.T) {
	j := []byte(`{"a":{"b":[1,{"c":"x"},[true,null]]},"d":"e"}`)
	for _, tt := range []struct {
		offset int64
		want   string
	}{
		{int64(strings.Index(string(j), `"x"`) + 3), "a.b[1].c"},
		{int64(strings.Index(string(j), `null`) + 4), "a.b[2][1]"},
		{int64(strings.Index(string(j), `{"c"`) + 1), "a.b[1]"},
		{int64(len(j) - 1), "d"},
	} {
		p, ok := jsonPath(j, tt.offset)
		if !ok || pathString(p) != tt.want {
			t.Errorf("offset %d: %q %v, want %q", tt.offset, pathString(p), ok, tt.want)
		}
	}
	if _, ok := jsonPath(j, int64(len(j)+10)); ok {
		t.Error("offset past the end found a path")
	}
}
