// Package zonefile reads the cluster zone from a YAML file of Kubernetes
// objects instead of the API server (standalone mode), and reloads it when
// the file changes.
//
// The file holds what `kubectl get -o yaml` prints or what one would
// `kubectl apply`: documents separated by "---", each an object or a List
// of objects. Namespaces, Services, discovery.k8s.io/v1 EndpointSlices and
// Pods are read; workloads (Deployment, StatefulSet, ...) are skipped
// silently and other kinds with a note. Objects are converted with the same
// functions as the API path (kube.Slim*). A Service with a selector and no
// EndpointSlice in the file gets its slices from the file's Pods, as the
// EndpointSlice controller would make them (endpoints.go).
package zonefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

	"github.com/nodedns/nodedns/pkg/kube"
	"github.com/nodedns/nodedns/pkg/zone"
)

// MaxSize is the largest zone file Load reads.
const MaxSize = 64 << 20

// maxSize is MaxSize, lowered by tests.
var maxSize int64 = MaxSize

// maxListDepth bounds Lists nested in Lists.
const maxListDepth = 4

// Load reads the zone file at path. Any bad document makes the whole load
// fail: the caller keeps its previous objects. Errors are *Error values
// naming the file and line when the problem is in the content.
func Load(path string) (zone.Objects, error) {
	data, err := readFile(path)
	if err != nil {
		return zone.Objects{}, err
	}
	objs, _, err := Parse(path, data)
	return objs, err
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zone file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("zone file: reading %s: %w", path, err)
	}
	if int64(len(data)) > maxSize {
		return nil, fmt.Errorf("zone file: %s is larger than %d bytes", path, maxSize)
	}
	return data, nil
}

// Parse parses zone-file data; name is the file name used in messages.
// notes lists, as "file:line: ..." lines, the objects that were skipped
// for being of a kind nodedns does not use (for logging; not errors).
func Parse(name string, data []byte) (objs zone.Objects, notes []string, err error) {
	p := &parser{name: name, seen: map[string]*object{}, namespaces: map[string]bool{}}
	for _, d := range splitDocuments(data) {
		if err := p.document(d); err != nil {
			return zone.Objects{}, nil, err
		}
	}
	return p.objects(), p.notes, nil
}

// document is one YAML document of the file.
type document struct {
	start int    // 1-based line of the document's first line in the file
	text  []byte // with the "---" marker blanked out, so columns and lines hold
	marks []mark // scanMarks(text), made when first needed
}

// line returns the file line of path in d; for the empty path, the
// document's first line with content.
func (d *document) line(path []seg) int {
	if d.marks == nil {
		d.marks = scanMarks(string(d.text))
	}
	if len(path) == 0 {
		if len(d.marks) > 0 {
			return d.start + d.marks[0].line
		}
		return d.start
	}
	return d.start + locate(d.marks, path)
}

// splitDocuments cuts data at "---" lines (a YAML document marker must start
// its line) and "..." document-end lines. A document keeps the rest of its
// "---" line, as YAML allows content there.
func splitDocuments(data []byte) []*document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	var docs []*document
	cur := &document{start: 1}
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		bare := bytes.TrimRight(line, "\r\n")
		switch {
		case isMarker(bare, "---"):
			docs = append(docs, cur)
			rest := append([]byte("   "), line[3:]...)
			cur = &document{start: lineNo, text: rest}
		case isMarker(bare, "..."):
			docs = append(docs, cur)
			cur = &document{start: lineNo + 1}
		default:
			cur.text = append(cur.text, line...)
		}
	}
	return append(docs, cur)
}

func isMarker(line []byte, m string) bool {
	if !bytes.HasPrefix(line, []byte(m)) {
		return false
	}
	return len(line) == len(m) || line[len(m)] == ' ' || line[len(m)] == '\t'
}

// object is an object read from the file, with where it came from.
type object struct {
	doc  *document
	path []seg // from the document's root: nil, or items[i]...
	kind string

	svc *corev1.Service
	es  *discoveryv1.EndpointSlice
	pod *corev1.Pod
}

func (o *object) line() int { return o.doc.line(o.path) }

type parser struct {
	name  string
	notes []string

	namespaces map[string]bool // explicit Namespace objects and namespaces of objects
	nsOrder    []string
	services   []*object
	slices     []*object
	pods       []*object
	seen       map[string]*object // kind/namespace/name -> first definition
}

func (p *parser) errorf(doc *document, path []seg, format string, args ...any) error {
	return &Error{File: p.name, Line: doc.line(path), Err: fmt.Errorf(format, args...)}
}

func (p *parser) note(doc *document, path []seg, format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf("%s:%d: ", p.name, doc.line(path))+fmt.Sprintf(format, args...))
}

func (p *parser) document(d *document) error {
	if len(bytes.TrimSpace(d.text)) == 0 {
		return nil
	}
	j, err := yaml.YAMLToJSON(d.text)
	if err != nil {
		return p.yamlError(d, err)
	}
	if bytes.Equal(j, []byte("null")) {
		return nil // only comments
	}
	return p.value(d, nil, j, "", "", 0)
}

// typeMeta is what is read of every object before its kind is known.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// value reads one object (or List) at path in d. defKind and defVersion
// apply to the items of typed lists (ServiceList), which omit them.
func (p *parser) value(d *document, path []seg, j []byte, defKind, defVersion string, depth int) error {
	if t := bytes.TrimSpace(j); len(t) == 0 || t[0] != '{' {
		return p.errorf(d, path, "not a Kubernetes object: want a mapping with apiVersion and kind")
	}
	var tm typeMeta
	if err := p.decode(d, path, j, &tm, "object"); err != nil {
		return err
	}
	if tm.Kind == "" {
		tm.Kind = defKind
	}
	if tm.APIVersion == "" {
		tm.APIVersion = defVersion
	}
	group, kind := apiGroup(tm.APIVersion), tm.Kind
	switch {
	case kind == "":
		return p.errorf(d, path, "missing kind")
	case kind == "List" && group == "" || isTypedList(kind):
		if depth >= maxListDepth {
			return p.errorf(d, path, "Lists nested more than %d deep", maxListDepth)
		}
		var l struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := p.decode(d, path, j, &l, kind); err != nil {
			return err
		}
		var itemKind, itemVersion string
		if kind != "List" { // typed list: ServiceList holds Services
			itemKind, itemVersion = strings.TrimSuffix(kind, "List"), tm.APIVersion
		}
		for i, it := range l.Items {
			if err := p.value(d, join(path, key("items"), index(i)), it, itemKind, itemVersion, depth+1); err != nil {
				return err
			}
		}
		return nil
	}

	want, read := readKinds[kind]
	switch {
	case read && (tm.APIVersion == want || tm.APIVersion == ""):
	case read && group == apiGroup(want):
		return p.errorf(d, join(path, key("apiVersion")), "%s: unsupported apiVersion %q (want %s)", kind, tm.APIVersion, want)
	case skippedKinds[kind]:
		return nil
	default:
		p.note(d, path, "ignored %s (apiVersion %q): not a kind nodedns reads", kind, tm.APIVersion)
		return nil
	}
	o := &object{doc: d, path: path, kind: kind}
	switch kind {
	case "Namespace":
		var ns corev1.Namespace
		if err := p.decode(d, path, j, &ns, kind); err != nil {
			return err
		}
		return p.addNamespace(o, &ns)
	case "Service":
		o.svc = &corev1.Service{}
		if err := p.decode(d, path, j, o.svc, kind); err != nil {
			return err
		}
		return p.add(o, &o.svc.ObjectMeta, &p.services, validateService(o.svc))
	case "EndpointSlice":
		o.es = &discoveryv1.EndpointSlice{}
		if err := p.decode(d, path, j, o.es, kind); err != nil {
			return err
		}
		return p.add(o, &o.es.ObjectMeta, &p.slices, validateEndpointSlice(o.es))
	case "Pod":
		o.pod = &corev1.Pod{}
		if err := p.decode(d, path, j, o.pod, kind); err != nil {
			return err
		}
		return p.add(o, &o.pod.ObjectMeta, &p.pods, validatePod(o.pod))
	}
	return nil
}

// readKinds are the kinds read, with their apiVersion.
var readKinds = map[string]string{
	"Namespace":     "v1",
	"Service":       "v1",
	"Pod":           "v1",
	"EndpointSlice": "discovery.k8s.io/v1",
}

// skippedKinds are skipped without a note: workloads, whose Pods a file
// lists on their own (kubectl get deploy,svc,pod -o yaml).
var skippedKinds = map[string]bool{
	"Deployment": true, "StatefulSet": true, "ReplicaSet": true, "DaemonSet": true,
	"Job": true, "CronJob": true, "ReplicationController": true,
}

// isTypedList reports whether kind is the list of a kind we know, as the
// API returns them (ServiceList); other kinds ending in List are left alone.
func isTypedList(kind string) bool {
	base, ok := strings.CutSuffix(kind, "List")
	_, read := readKinds[base]
	return ok && (read || skippedKinds[base])
}

func apiGroup(apiVersion string) string {
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		return g
	}
	return ""
}

// decode unmarshals j into v; a type error is reported at the line of the
// offending field.
func (p *parser) decode(d *document, path []seg, j []byte, v any, kind string) error {
	err := json.Unmarshal(j, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if sub, ok := jsonPath(j, te.Offset); ok {
			return p.errorf(d, join(path, sub...), "%s: %s: got %s, want %s", kind, pathString(sub), te.Value, goType(te))
		}
	}
	return p.errorf(d, path, "%s: %v", kind, err)
}

func goType(te *json.UnmarshalTypeError) string {
	if te.Type == nil {
		return "field"
	}
	return te.Type.String()
}

// add defaults the namespace, validates, checks for a duplicate and
// records o.
func (p *parser) add(o *object, m interface {
	GetNamespace() string
	SetNamespace(string)
	GetName() string
}, list *[]*object, prob *problem) error {
	if m.GetNamespace() == "" {
		m.SetNamespace(corev1.NamespaceDefault)
	}
	if prob != nil {
		return p.errorf(o.doc, join(o.path, prob.path...), "%s %s: %s: %s", o.kind, describe(m.GetNamespace(), m.GetName()), pathString(prob.path), prob.msg)
	}
	k := o.kind + "/" + m.GetNamespace() + "/" + m.GetName()
	if first, dup := p.seen[k]; dup {
		return p.errorf(o.doc, o.path, "duplicate %s %s/%s (first at line %d)", o.kind, m.GetNamespace(), m.GetName(), first.line())
	}
	p.seen[k] = o
	p.addNamespaceName(m.GetNamespace())
	*list = append(*list, o)
	return nil
}

func (p *parser) addNamespace(o *object, ns *corev1.Namespace) error {
	if prob := validateNamespace(ns); prob != nil {
		return p.errorf(o.doc, join(o.path, prob.path...), "Namespace %q: %s: %s", ns.Name, pathString(prob.path), prob.msg)
	}
	k := "Namespace/" + ns.Name
	if first, dup := p.seen[k]; dup {
		return p.errorf(o.doc, o.path, "duplicate Namespace %s (first at line %d)", ns.Name, first.line())
	}
	p.seen[k] = o
	p.addNamespaceName(ns.Name)
	return nil
}

func (p *parser) addNamespaceName(name string) {
	if !p.namespaces[name] {
		p.namespaces[name] = true
		p.nsOrder = append(p.nsOrder, name)
	}
}

func describe(ns, name string) string {
	if name == "" {
		return "(unnamed, namespace " + ns + ")"
	}
	return ns + "/" + name
}

// objects converts what was read, adding the EndpointSlices the file's Pods
// imply.
func (p *parser) objects() zone.Objects {
	var out zone.Objects
	out.Namespaces = slices.Clone(p.nsOrder)
	slices.Sort(out.Namespaces)
	services := make([]*corev1.Service, 0, len(p.services))
	for _, o := range p.services {
		services = append(services, o.svc)
		out.Services = append(out.Services, kube.SlimService(o.svc))
	}
	explicit := make([]*discoveryv1.EndpointSlice, 0, len(p.slices))
	for _, o := range p.slices {
		explicit = append(explicit, o.es)
		out.EndpointSlices = append(out.EndpointSlices, kube.SlimEndpointSlice(o.es))
	}
	pods := make([]*corev1.Pod, 0, len(p.pods))
	for _, o := range p.pods {
		pods = append(pods, o.pod)
		out.Pods = append(out.Pods, kube.SlimPod(o.pod))
	}
	for _, es := range endpointSlicesFromPods(services, explicit, pods) {
		out.EndpointSlices = append(out.EndpointSlices, kube.SlimEndpointSlice(es))
	}
	return out
}
