// The Go peer of the benchmark: a minimal net/http validating webhook with the same pod rules
// as kubext_webhooks' default policy (12.4.1 / 12.9.1), standard library only.
//
//	go-peer -addr 127.0.0.1:9443 -cert tls.crt -key tls.key
//
// POST /validate/pods answers an admission.k8s.io/v1 AdmissionReview; every violation is
// listed with its field path, in the same words as the Python service, so the benchmark can
// check that both decide alike.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"time"
)

var (
	allowedRegistries = []string{"docker.io", "gcr.io", "quay.io", "registry.k8s.io"}
	requiredLabels    = []string{"app", "version", "environment"}
	resourceNames     = []string{"cpu", "memory"}
	dockerHubAliases  = map[string]bool{"index.docker.io": true, "registry-1.docker.io": true, "registry.hub.docker.com": true}
	quantityRE        = regexp.MustCompile(`^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$`)
)

const maxBody = 8 << 20

type securityContext struct {
	Privileged   *bool  `json:"privileged"`
	RunAsNonRoot *bool  `json:"runAsNonRoot"`
	RunAsUser    *int64 `json:"runAsUser"`
}

type container struct {
	Name            string           `json:"name"`
	Image           string           `json:"image"`
	SecurityContext *securityContext `json:"securityContext"`
	Resources       struct {
		Requests map[string]any `json:"requests"`
		Limits   map[string]any `json:"limits"`
	} `json:"resources"`
}

type pod struct {
	Metadata struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Labels       map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Containers          []container      `json:"containers"`
		InitContainers      []container      `json:"initContainers"`
		EphemeralContainers []container      `json:"ephemeralContainers"`
		SecurityContext     *securityContext `json:"securityContext"`
		HostNetwork         bool             `json:"hostNetwork"`
		HostPID             bool             `json:"hostPID"`
		HostIPC             bool             `json:"hostIPC"`
	} `json:"spec"`
}

type admissionReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID       string                                `json:"uid"`
		Kind      struct{ Group, Version, Kind string } `json:"kind"`
		Operation string                                `json:"operation"`
		Namespace string                                `json:"namespace"`
		Object    json.RawMessage                       `json:"object"`
	} `json:"request"`
}

type status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

type admissionResponse struct {
	UID     string  `json:"uid"`
	Allowed bool    `json:"allowed"`
	Status  *status `json:"status,omitempty"`
}

type reviewOut struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Response   admissionResponse `json:"response"`
}

type violation struct{ path, message string }

func imageLocation(image string) (string, string) {
	name := strings.SplitN(image, "@", 2)[0]
	first, rest, found := strings.Cut(name, "/")
	var host, path string
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host, path = strings.ToLower(first), rest
	} else if found {
		host, path = "docker.io", name
	} else {
		host, path = "docker.io", "library/"+name
	}
	if dockerHubAliases[host] {
		host = "docker.io"
	}
	if i := strings.LastIndex(path, "/"); i >= 0 {
		path = path[:i+1] + strings.SplitN(path[i+1:], ":", 2)[0]
	} else {
		path = strings.SplitN(path, ":", 2)[0]
	}
	return host, path
}

func registryAllowed(image string) bool {
	host, path := imageLocation(image)
	for _, entry := range allowedRegistries {
		entryHost, prefix, _ := strings.Cut(entry, "/")
		if entryHost != host {
			continue
		}
		if prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/") {
			return true
		}
	}
	return false
}

// quantitySign: 1 positive, 0 zero or negative, -1 not a quantity.
func quantitySign(raw any) int {
	switch v := raw.(type) {
	case float64:
		if v > 0 {
			return 1
		}
		return 0
	case string:
		m := quantityRE.FindStringSubmatch(v)
		if m == nil {
			return -1
		}
		r, ok := new(big.Rat).SetString(m[1])
		if !ok {
			return -1
		}
		if r.Sign() > 0 {
			return 1
		}
		return 0
	}
	return -1
}

type ref struct {
	list  string
	index int
	c     *container
}

func (r ref) path() string { return fmt.Sprintf("spec.%s[%d]", r.list, r.index) }
func (r ref) name() string {
	if r.c.Name != "" {
		return r.c.Name
	}
	return fmt.Sprintf("#%d", r.index)
}

func refs(p *pod, withEphemeral bool) []ref {
	var out []ref
	add := func(list string, cs []container) {
		for i := range cs {
			out = append(out, ref{list, i, &cs[i]})
		}
	}
	add("containers", p.Spec.Containers)
	add("initContainers", p.Spec.InitContainers)
	if withEphemeral {
		add("ephemeralContainers", p.Spec.EphemeralContainers)
	}
	return out
}

func rootSettings(sc *securityContext, path, who string) []violation {
	var out []violation
	if sc == nil {
		return nil
	}
	if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
		out = append(out, violation{path + ".runAsNonRoot", who + " sets runAsNonRoot to false"})
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		out = append(out, violation{path + ".runAsUser", who + " runs as root (runAsUser 0)"})
	}
	return out
}

func pyRepr(s string) string { return "'" + s + "'" }

// violations in the order the Python service reports them.
func violations(p *pod) []violation {
	var out []violation
	for _, label := range requiredLabels {
		if p.Metadata.Labels[label] == "" {
			out = append(out, violation{"metadata.labels." + label, "required label " + pyRepr(label) + " is missing"})
		}
	}
	for _, f := range []struct {
		name string
		on   bool
	}{{"hostNetwork", p.Spec.HostNetwork}, {"hostPID", p.Spec.HostPID}, {"hostIPC", p.Spec.HostIPC}} {
		if f.on {
			out = append(out, violation{"spec." + f.name, f.name + " is not allowed"})
		}
	}
	all := refs(p, true)
	out = append(out, rootSettings(p.Spec.SecurityContext, "spec.securityContext", "the pod")...)
	for _, r := range all {
		out = append(out, rootSettings(r.c.SecurityContext, r.path()+".securityContext", "container "+pyRepr(r.name()))...)
	}
	for _, r := range all {
		if r.c.Image == "" {
			out = append(out, violation{r.path() + ".image", "container " + pyRepr(r.name()) + " has no image"})
		} else if !registryAllowed(r.c.Image) {
			host, _ := imageLocation(r.c.Image)
			out = append(out, violation{r.path() + ".image", fmt.Sprintf(
				"image %s of container %s is from registry %s, which is not allowed (allowed: %s)",
				pyRepr(r.c.Image), pyRepr(r.name()), pyRepr(host), strings.Join(allowedRegistries, ", "))})
		}
	}
	for _, r := range all {
		if r.c.SecurityContext != nil && r.c.SecurityContext.Privileged != nil && *r.c.SecurityContext.Privileged {
			out = append(out, violation{r.path() + ".securityContext.privileged", "container " + pyRepr(r.name()) + " is privileged, which is not allowed"})
		}
	}
	for _, r := range refs(p, false) {
		for _, kind := range []string{"requests", "limits"} {
			values := r.c.Resources.Requests
			if kind == "limits" {
				values = r.c.Resources.Limits
			}
			for _, name := range resourceNames {
				path := fmt.Sprintf("%s.resources.%s.%s", r.path(), kind, name)
				raw, ok := values[name]
				var msg string
				switch {
				case !ok || raw == nil:
					msg = fmt.Sprintf("container %s must set %s.%s", pyRepr(r.name()), kind, name)
				case quantitySign(raw) > 0:
					continue
				case quantitySign(raw) == 0:
					msg = fmt.Sprintf("container %s must set a non-zero %s.%s", pyRepr(r.name()), kind, name)
				default:
					msg = fmt.Sprintf("container %s: %s.%s %v is not a quantity", pyRepr(r.name()), kind, name, raw)
				}
				out = append(out, violation{path, msg})
			}
		}
	}
	return out
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code})
}

func validatePods(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	if ct := strings.ToLower(strings.TrimSpace(strings.SplitN(r.Header.Get("Content-Type"), ";", 2)[0])); ct != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "expected application/json")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) == 0 || len(body) > maxBody {
		fail(w, http.StatusBadRequest, "empty, unreadable or oversized body")
		return
	}
	var review admissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		fail(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return
	}
	if review.Kind != "AdmissionReview" || review.Request == nil || review.Request.UID == "" {
		fail(w, http.StatusBadRequest, "not an AdmissionReview with a request")
		return
	}
	resp := admissionResponse{UID: review.Request.UID, Allowed: true}
	req := review.Request
	if req.Operation != "DELETE" && req.Operation != "CONNECT" {
		var p pod
		if req.Kind.Kind != "Pod" || req.Kind.Group != "" {
			resp = admissionResponse{UID: req.UID, Status: &status{400, "this webhook validates core/v1 Pods", "BadRequest"}}
		} else if err := json.Unmarshal(req.Object, &p); err != nil {
			resp = admissionResponse{UID: req.UID, Status: &status{400, "malformed Pod: " + err.Error(), "BadRequest"}}
		} else if found := violations(&p); len(found) > 0 {
			parts := make([]string, len(found))
			for i, v := range found {
				parts[i] = v.path + ": " + v.message
			}
			ns := req.Namespace
			if ns == "" {
				ns = p.Metadata.Namespace
			}
			name := p.Metadata.Name
			if name == "" && p.Metadata.GenerateName != "" {
				name = p.Metadata.GenerateName + "*"
			} else if name == "" {
				name = "(unnamed)"
			}
			plural := "s"
			if len(found) == 1 {
				plural = ""
			}
			msg := fmt.Sprintf("pod %s/%s violates policy default (%d violation%s): %s", ns, name, len(found), plural, strings.Join(parts, "; "))
			resp = admissionResponse{UID: req.UID, Status: &status{403, msg, "Forbidden"}}
		}
	}
	out, _ := json.Marshal(reviewOut{APIVersion: review.APIVersion, Kind: "AdmissionReview", Response: resp})
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9443", "listen address")
	cert := flag.String("cert", "tls.crt", "serving certificate (PEM)")
	key := flag.String("key", "tls.key", "serving key (PEM)")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/validate/pods", validatePods)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	server := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("go-peer listening on %s", *addr)
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
