// The operator benchmark's compiled peer: a minimal controller-runtime operator doing the WebApp
// reconcile the way kubext-operator does it (services/operator/kubext_operator: reconciler.py,
// planning/webapp.py, planning/common.py), so that time, CPU, memory and writes compare.
//
// Same work per WebApp: a finalizer (merge patch under resourceVersion), a Deployment and a
// Service owned by the WebApp (server-side apply, field manager kubext-operator, forced; the
// spec hash annotation decides whether to write), one status merge patch on the status
// subresource with phase, replicas, readyReplicas, selector, observedGeneration and a Ready
// condition (DeploymentReady / DeploymentNotReady / DeploymentFailed / InvalidSpec /
// ApplyFailed), the first status of a new WebApp held back until Ready or --status-settle after
// the Deployment was created, and one core/v1 Event per change. Like ours it remembers its own
// last writes (the cache may not show them yet), so a lagging cache causes no second write.
//
// Same client settings as ours: QPS 200, burst 400, 16 workers, the children watched with the
// selector app.kubernetes.io/managed-by=kubext-operator. Writes are counted by resource and
// verb as kubext_operator_api_writes_total, beside controller-runtime's own metrics on
// --metrics-addr, which also answers /healthz.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

const (
	fieldManager  = "kubext-operator"
	finalizer     = "webapp.example.com/finalizer"
	specHashKey   = "kubext.example.com/spec-hash"
	labelName     = "app.kubernetes.io/name"
	labelInstance = "app.kubernetes.io/instance"
	labelManaged  = "app.kubernetes.io/managed-by"
	appName       = "webapp"
	servicePort   = 80
)

var groupVersion = schema.GroupVersion{Group: "example.com", Version: "v1"}

// -- the WebApp type (helm/operator/crds/webapps.example.com.yaml) ------------------------------

type Resources struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

type WebAppSpec struct {
	Replicas  int32      `json:"replicas"`
	Image     string     `json:"image"`
	Port      int32      `json:"port"`
	Resources *Resources `json:"resources,omitempty"`
}

type WebAppStatus struct {
	Phase              string             `json:"phase,omitempty"`
	Replicas           int32              `json:"replicas"`
	ReadyReplicas      int32              `json:"readyReplicas"`
	Selector           string             `json:"selector,omitempty"`
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

type WebApp struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              WebAppSpec   `json:"spec"`
	Status            WebAppStatus `json:"status,omitempty"`
}

type WebAppList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebApp `json:"items"`
}

func (in *WebAppStatus) deepCopy() WebAppStatus {
	out := *in
	out.Conditions = append([]metav1.Condition(nil), in.Conditions...)
	return out
}

func (in *WebApp) DeepCopyInto(out *WebApp) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.Spec.Resources != nil {
		r := *in.Spec.Resources
		out.Spec.Resources = &r
	}
	out.Status = in.Status.deepCopy()
}

func (in *WebApp) DeepCopyObject() runtime.Object {
	out := new(WebApp)
	in.DeepCopyInto(out)
	return out
}

func (in *WebAppList) DeepCopyObject() runtime.Object {
	out := &WebAppList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = make([]WebApp, len(in.Items))
	for i := range in.Items {
		in.Items[i].DeepCopyInto(&out.Items[i])
	}
	return out
}

// -- planning (planning/webapp.py, planning/common.py) ------------------------------------------

var labelJunk = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func labelValue(text string) string {
	v := labelJunk.ReplaceAllString(text, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	v = strings.Trim(v, "-._")
	if v == "" {
		return "unknown"
	}
	return v
}

func imageVersion(image string) string {
	name := strings.SplitN(image, "@", 2)[0]
	last := name[strings.LastIndex(name, "/")+1:]
	if i := strings.LastIndex(last, ":"); i >= 0 {
		return labelValue(last[i+1:])
	}
	return "latest"
}

func selectorOf(name string) map[string]any {
	return map[string]any{labelName: appName, labelInstance: name}
}

func selectorString(name string) string {
	sel := selectorOf(name)
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%s", k, sel[k])
	}
	return strings.Join(parts, ",")
}

type desired struct {
	kind string
	obj  *unstructured.Unstructured
	hash string
}

func canonical(value string) (string, error) {
	q, err := resource.ParseQuantity(value)
	if err != nil {
		return "", fmt.Errorf("spec.resources: %q is not a quantity", value)
	}
	return q.String(), nil
}

// planChildren: the Deployment and the Service, each with the hash of its manifest.
func planChildren(wa *WebApp, defaults Resources, podLabels map[string]string) ([]desired, error) {
	given := Resources{}
	if wa.Spec.Resources != nil {
		given = *wa.Spec.Resources
	}
	if given.CPU == "" {
		given.CPU = defaults.CPU
	}
	if given.Memory == "" {
		given.Memory = defaults.Memory
	}
	cpu, err := canonical(given.CPU)
	if err != nil {
		return nil, err
	}
	memory, err := canonical(given.Memory)
	if err != nil {
		return nil, err
	}
	name := wa.Name
	objLabels := func() map[string]any {
		return map[string]any{labelName: appName, labelInstance: name, labelManaged: fieldManager}
	}
	pod := objLabels()
	pod["app"] = labelValue(name)
	pod["version"] = imageVersion(wa.Spec.Image)
	for k, v := range podLabels {
		pod[k] = v
	}
	amounts := func() map[string]any { return map[string]any{"cpu": cpu, "memory": memory} }
	deployment := map[string]any{
		"spec": map[string]any{
			"replicas": int64(wa.Spec.Replicas),
			"selector": map[string]any{"matchLabels": selectorOf(name)},
			"template": map[string]any{
				"metadata": map[string]any{"labels": pod},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name":  "web",
					"image": wa.Spec.Image,
					"ports": []any{map[string]any{
						"name": "http", "containerPort": int64(wa.Spec.Port), "protocol": "TCP",
					}},
					"resources": map[string]any{"requests": amounts(), "limits": amounts()},
				}}},
			},
		},
	}
	service := map[string]any{
		"spec": map[string]any{
			"type":     "ClusterIP",
			"selector": selectorOf(name),
			"ports": []any{map[string]any{
				"name": "http", "port": int64(servicePort), "targetPort": int64(wa.Spec.Port), "protocol": "TCP",
			}},
		},
	}
	return []desired{
		child(wa, "apps/v1", "Deployment", objLabels(), deployment),
		child(wa, "v1", "Service", objLabels(), service),
	}, nil
}

func child(wa *WebApp, apiVersion, kind string, objLabels map[string]any, body map[string]any) desired {
	manifest := map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata": map[string]any{
			"name":      wa.Name,
			"namespace": wa.Namespace,
			"labels":    objLabels,
			"ownerReferences": []any{map[string]any{
				"apiVersion": groupVersion.String(), "kind": "WebApp", "name": wa.Name,
				"uid": string(wa.UID), "controller": true, "blockOwnerDeletion": true,
			}},
		},
	}
	for k, v := range body {
		manifest[k] = v
	}
	text, _ := json.Marshal(manifest) // map keys are sorted: a stable hash
	sum := sha256.Sum256(text)
	hash := hex.EncodeToString(sum[:])[:16]
	manifest["metadata"].(map[string]any)["annotations"] = map[string]any{specHashKey: hash}
	return desired{kind: kind, obj: &unstructured.Unstructured{Object: manifest}, hash: hash}
}

// needsApply mirrors common.needs_apply: observed* from the cache, expected* from our last write.
func needsApply(want desired, observed client.Object, expected *appliedRecord) bool {
	if observed == nil {
		return expected == nil || expected.hash != want.hash
	}
	observedHash := observed.GetAnnotations()[specHashKey]
	if want.hash != observedHash && (expected == nil || want.hash != expected.hash) {
		return true
	}
	return observedHash == want.hash && expected != nil && observed.GetGeneration() > expected.generation
}

type deploymentFacts struct {
	replicas, ready, updated int32
	generationObserved       bool
	failure                  string
}

func factsOf(d *appsv1.Deployment) deploymentFacts {
	f := deploymentFacts{
		replicas: d.Status.Replicas, ready: d.Status.ReadyReplicas, updated: d.Status.UpdatedReplicas,
		generationObserved: d.Status.ObservedGeneration >= d.Generation,
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			f.failure = c.Message
		}
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			f.failure = c.Message
		}
	}
	return f
}

func setReady(conds []metav1.Condition, status metav1.ConditionStatus, reason, message string, generation int64) []metav1.Condition {
	out := append([]metav1.Condition(nil), conds...)
	meta.SetStatusCondition(&out, metav1.Condition{
		Type: "Ready", Status: status, Reason: reason, Message: message,
		ObservedGeneration: generation, LastTransitionTime: metav1.Now().Rfc3339Copy(),
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func planStatus(wa *WebApp, previous WebAppStatus, facts *deploymentFacts, current bool) WebAppStatus {
	out := WebAppStatus{Selector: selectorString(wa.Name), ObservedGeneration: wa.Generation}
	f := deploymentFacts{}
	if facts != nil {
		f = *facts
	}
	out.Replicas, out.ReadyReplicas = f.replicas, f.ready
	wanted := wa.Spec.Replicas
	message := fmt.Sprintf("Ready replicas: %d/%d", f.ready, wanted)
	switch {
	case f.failure != "":
		out.Phase = "Failed"
		out.Conditions = setReady(previous.Conditions, metav1.ConditionFalse, "DeploymentFailed", f.failure, wa.Generation)
	case current && f.ready >= wanted && f.updated >= wanted:
		out.Phase = "Running"
		out.Conditions = setReady(previous.Conditions, metav1.ConditionTrue, "DeploymentReady", message, wa.Generation)
	default:
		out.Phase = "Pending"
		out.Conditions = setReady(previous.Conditions, metav1.ConditionFalse, "DeploymentNotReady", message, wa.Generation)
	}
	return out
}

func invalidStatus(wa *WebApp, previous WebAppStatus, reason, problem string) WebAppStatus {
	return WebAppStatus{
		Selector: selectorString(wa.Name), ObservedGeneration: wa.Generation, Phase: "Failed",
		Replicas: previous.Replicas, ReadyReplicas: previous.ReadyReplicas,
		Conditions: setReady(previous.Conditions, metav1.ConditionFalse, reason, problem, wa.Generation),
	}
}

func sameStatus(a, b WebAppStatus) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// -- the reconciler (reconciler.py) -------------------------------------------------------------

type childKey struct{ kind, namespace, name string }

type appliedRecord struct {
	hash       string
	generation int64
}

type Reconciler struct {
	client.Client
	api       client.Reader // uncached, for finalizer conflict retries
	recorder  record.EventRecorder
	defaults  Resources
	podLabels map[string]string
	settle    time.Duration

	mu             sync.Mutex
	applied        map[childKey]appliedRecord
	status         map[types.UID]WebAppStatus
	finalizerAdded map[types.UID]bool
	rolloutStarted map[types.UID]time.Time
	cleaned        map[types.UID]bool
	uidOf          map[types.NamespacedName]types.UID
}

func (r *Reconciler) forgetChild(k childKey) {
	r.mu.Lock()
	delete(r.applied, k)
	r.mu.Unlock()
}

func (r *Reconciler) forgetOwner(nn types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if uid, ok := r.uidOf[nn]; ok {
		delete(r.status, uid)
		delete(r.finalizerAdded, uid)
		delete(r.rolloutStarted, uid)
		delete(r.cleaned, uid)
		delete(r.uidOf, nn)
	}
}

func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	wa := &WebApp{}
	if err := r.Get(ctx, req.NamespacedName, wa); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetOwner(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	r.mu.Lock()
	r.uidOf[req.NamespacedName] = wa.UID
	r.mu.Unlock()
	if !wa.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.finalize(ctx, wa)
	}
	// The finalizer is written concurrently with the children (owned: GC covers a race).
	finalizerDone := make(chan error, 1)
	go func() { finalizerDone <- r.ensureFinalizer(ctx, wa) }()
	result, err := r.reconcileBody(ctx, wa)
	if ferr := <-finalizerDone; err == nil && ferr != nil {
		err = ferr
	}
	return result, err
}

func (r *Reconciler) previousStatus(wa *WebApp) WebAppStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.status[wa.UID]; ok {
		return s.deepCopy()
	}
	return wa.Status.deepCopy()
}

func (r *Reconciler) reconcileBody(ctx context.Context, wa *WebApp) (reconcile.Result, error) {
	previous := r.previousStatus(wa)
	plan, err := planChildren(wa, r.defaults, r.podLabels)
	if err != nil {
		if wrote, werr := r.writeStatus(ctx, wa, invalidStatus(wa, previous, "InvalidSpec", err.Error()), previous); werr != nil {
			return reconcile.Result{}, werr
		} else if wrote {
			r.recorder.Event(wa, corev1.EventTypeWarning, "InvalidSpec", err.Error())
		}
		return reconcile.Result{}, nil
	}
	observed := make([]client.Object, len(plan))
	for i, want := range plan {
		obj := newChild(want.kind)
		if err := r.Get(ctx, types.NamespacedName{Namespace: wa.Namespace, Name: wa.Name}, obj); err == nil {
			if ref := metav1.GetControllerOf(obj); ref != nil && ref.UID != wa.UID {
				return reconcile.Result{RequeueAfter: 2 * time.Second}, nil // a predecessor's child
			}
			observed[i] = obj
		} else if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
	}
	changes, err := r.apply(ctx, wa, plan, observed)
	if err != nil {
		failed := invalidStatus(wa, previous, "ApplyFailed", err.Error())
		if wrote, werr := r.writeStatus(ctx, wa, failed, previous); werr == nil && wrote {
			r.recorder.Event(wa, corev1.EventTypeWarning, "ApplyFailed", err.Error())
		}
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	for _, c := range changes {
		if c == "created Deployment "+wa.Name {
			r.mu.Lock()
			r.rolloutStarted[wa.UID] = time.Now()
			r.mu.Unlock()
		}
	}
	if len(changes) > 0 {
		reason := "Created"
		for _, c := range changes {
			if !strings.HasPrefix(c, "created") {
				reason = "Updated"
			}
		}
		r.recorder.Eventf(wa, corev1.EventTypeNormal, reason, "%s (replicas %d, image %s)",
			strings.Join(changes, "; "), wa.Spec.Replicas, wa.Spec.Image)
	}
	var facts *deploymentFacts
	current := false
	if d, ok := observed[0].(*appsv1.Deployment); ok && d != nil {
		f := factsOf(d)
		facts = &f
		current = d.Annotations[specHashKey] == plan[0].hash && f.generationObserved
	}
	next := planStatus(wa, previous, facts, current)
	if next.Phase == "Pending" && previous.Phase == "" {
		// A new WebApp's first status waits until Ready or settled (from our Deployment create,
		// else from the WebApp's creation): one status write instead of Pending-then-Running.
		r.mu.Lock()
		started, ok := r.rolloutStarted[wa.UID]
		r.mu.Unlock()
		var waited time.Duration
		if ok {
			waited = time.Since(started)
		} else {
			waited = time.Since(wa.CreationTimestamp.Time)
		}
		if wait := r.settle - waited; wait > 0 {
			return reconcile.Result{RequeueAfter: min(wait, r.settle)}, nil
		}
	}
	wrote, err := r.writeStatus(ctx, wa, next, previous)
	if err != nil {
		return reconcile.Result{}, err
	}
	if wrote {
		r.mu.Lock()
		delete(r.rolloutStarted, wa.UID)
		r.mu.Unlock()
	}
	return reconcile.Result{}, nil
}

func newChild(kind string) client.Object {
	if kind == "Deployment" {
		return &appsv1.Deployment{}
	}
	return &corev1.Service{}
}

// apply writes every child that differs from the plan, concurrently, like ours.
func (r *Reconciler) apply(ctx context.Context, wa *WebApp, plan []desired, observed []client.Object) ([]string, error) {
	changes := make([]string, len(plan))
	errs := make([]error, len(plan))
	var wg sync.WaitGroup
	for i := range plan {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			changes[i], errs[i] = r.applyOne(ctx, wa, plan[i], observed[i])
		}(i)
	}
	wg.Wait()
	var out []string
	for i := range plan {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if changes[i] != "" {
			out = append(out, changes[i])
		}
	}
	return out, nil
}

func (r *Reconciler) applyOne(ctx context.Context, wa *WebApp, want desired, observed client.Object) (string, error) {
	key := childKey{want.kind, wa.Namespace, wa.Name}
	r.mu.Lock()
	rec, ok := r.applied[key]
	r.mu.Unlock()
	var expected *appliedRecord
	if ok {
		expected = &rec
	}
	if !needsApply(want, observed, expected) {
		if observed != nil && expected == nil && observed.GetAnnotations()[specHashKey] == want.hash {
			r.mu.Lock()
			r.applied[key] = appliedRecord{want.hash, observed.GetGeneration()}
			r.mu.Unlock()
		}
		return "", nil
	}
	obj := want.obj.DeepCopy()
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
		client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return "", err
	}
	r.mu.Lock()
	r.applied[key] = appliedRecord{want.hash, obj.GetGeneration()}
	r.mu.Unlock()
	verb := "updated"
	if observed == nil && expected == nil {
		verb = "created"
	}
	ctrl.Log.Info("applied", "object", wa.Namespace+"/"+wa.Name, "child", want.kind+"/"+wa.Name, "verb", verb)
	return verb + " " + want.kind + " " + wa.Name, nil
}

func (r *Reconciler) writeStatus(ctx context.Context, wa *WebApp, next, previous WebAppStatus) (bool, error) {
	if sameStatus(previous, next) {
		return false, nil
	}
	body, err := json.Marshal(map[string]any{"status": next})
	if err != nil {
		return false, err
	}
	if err := r.Status().Patch(ctx, wa.DeepCopy(), client.RawPatch(types.MergePatchType, body),
		client.FieldOwner(fieldManager)); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	r.mu.Lock()
	r.status[wa.UID] = next
	r.mu.Unlock()
	ctrl.Log.Info("status written", "object", wa.Namespace+"/"+wa.Name, "phase", next.Phase)
	return true, nil
}

func (in *WebApp) DeepCopy() *WebApp {
	out := new(WebApp)
	in.DeepCopyInto(out)
	return out
}

func (r *Reconciler) ensureFinalizer(ctx context.Context, wa *WebApp) error {
	r.mu.Lock()
	added := r.finalizerAdded[wa.UID]
	r.mu.Unlock()
	if added || controllerutil.ContainsFinalizer(wa, finalizer) {
		return nil
	}
	if err := r.editFinalizers(ctx, wa, func(names []string) []string {
		for _, n := range names {
			if n == finalizer {
				return nil
			}
		}
		return append(names, finalizer)
	}); err != nil {
		return err
	}
	r.mu.Lock()
	r.finalizerAdded[wa.UID] = true
	r.mu.Unlock()
	return nil
}

func (r *Reconciler) finalize(ctx context.Context, wa *WebApp) error {
	if !controllerutil.ContainsFinalizer(wa, finalizer) {
		return nil
	}
	r.mu.Lock()
	cleaned := r.cleaned[wa.UID]
	r.mu.Unlock()
	if !cleaned {
		background := client.PropagationPolicy(metav1.DeletePropagationBackground)
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}} {
			obj.SetNamespace(wa.Namespace)
			obj.SetName(wa.Name)
			if err := r.Delete(ctx, obj, background); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
		r.recorder.Eventf(wa, corev1.EventTypeNormal, "Deleted", "deleted Deployment and Service %s", wa.Name)
		r.mu.Lock()
		r.cleaned[wa.UID] = true
		r.mu.Unlock()
	}
	return r.editFinalizers(ctx, wa, func(names []string) []string {
		out := []string{}
		found := false
		for _, n := range names {
			if n == finalizer {
				found = true
			} else {
				out = append(out, n)
			}
		}
		if !found {
			return nil
		}
		return out
	})
}

// editFinalizers: a merge patch of metadata.finalizers under resourceVersion, re-read on conflict.
func (r *Reconciler) editFinalizers(ctx context.Context, wa *WebApp, edit func([]string) []string) error {
	names, version := append([]string(nil), wa.Finalizers...), wa.ResourceVersion
	for attempt := 0; attempt < 5; attempt++ {
		wanted := edit(names)
		if wanted == nil {
			return nil
		}
		body, _ := json.Marshal(map[string]any{
			"metadata": map[string]any{"finalizers": wanted, "resourceVersion": version},
		})
		err := r.Patch(ctx, wa.DeepCopy(), client.RawPatch(types.MergePatchType, body), client.FieldOwner(fieldManager))
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == 4 {
			return err
		}
		fresh := &WebApp{}
		if err := r.api.Get(ctx, client.ObjectKeyFromObject(wa), fresh); err != nil {
			return client.IgnoreNotFound(err)
		}
		names, version = fresh.Finalizers, fresh.ResourceVersion
	}
	return nil
}

// -- watches ------------------------------------------------------------------------------------

// childEvents queues a child's owner, and forgets our last write of a child that was deleted
// (the next reconcile must create it again), as ours does.
type childEvents struct {
	owner  handler.EventHandler
	kind   string
	forget func(childKey)
}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func (h childEvents) Create(ctx context.Context, e event.CreateEvent, q queue) {
	h.owner.Create(ctx, e, q)
}

func (h childEvents) Update(ctx context.Context, e event.UpdateEvent, q queue) {
	h.owner.Update(ctx, e, q)
}

func (h childEvents) Delete(ctx context.Context, e event.DeleteEvent, q queue) {
	h.forget(childKey{h.kind, e.Object.GetNamespace(), e.Object.GetName()})
	h.owner.Delete(ctx, e, q)
}

func (h childEvents) Generic(ctx context.Context, e event.GenericEvent, q queue) {
	h.owner.Generic(ctx, e, q)
}

// -- writes by resource and verb (kubext_operator_api_writes_total, as ours counts them) -------

var writes = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kubext_operator_api_writes_total",
	Help: "API writes by resource and verb.",
}, []string{"resource", "verb"})

func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && len(parts) > i+2 {
			parts = parts[i+2:]
			goto found
		}
	}
	if len(parts) > 0 && parts[0] == "api" {
		parts = parts[min(2, len(parts)):]
	} else {
		parts = parts[min(3, len(parts)):]
	}
found:
	if len(parts) == 0 {
		return ""
	}
	if len(parts) > 2 {
		return parts[0] + "/" + parts[2]
	}
	return parts[0]
}

type countingTransport struct{ next http.RoundTripper }

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		writes.WithLabelValues(resourceOf(req.URL.Path), req.Method).Inc()
	}
	return t.next.RoundTrip(req)
}

// -- main ---------------------------------------------------------------------------------------

func main() {
	var namespaces, metricsAddr, cpu, memory string
	var workers int
	var qps float64
	var burst int
	var resync, settle time.Duration
	// --kubeconfig (else $KUBECONFIG, else in-cluster) is controller-runtime's own flag.
	flag.StringVar(&namespaces, "namespaces", "", "comma-separated namespaces to watch (empty: all)")
	flag.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:8080", "/metrics and /healthz")
	flag.IntVar(&workers, "workers", 16, "concurrent reconciles")
	flag.Float64Var(&qps, "qps", 200, "client QPS")
	flag.IntVar(&burst, "burst", 400, "client burst")
	flag.DurationVar(&resync, "resync-period", 600*time.Second, "re-reconcile everything this often")
	flag.DurationVar(&settle, "status-settle", 5*time.Second, "how long a new WebApp's first status may wait to be Ready")
	flag.StringVar(&cpu, "default-cpu", "100m", "requests = limits cpu of a WebApp that leaves it out")
	flag.StringVar(&memory, "default-memory", "128Mi", "requests = limits memory of a WebApp that leaves it out")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseDevMode(false)))
	log := ctrl.Log.WithName("go-peer")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "kubeconfig")
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst, cfg.UserAgent = float32(qps), burst, fieldManager
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt} })
	crmetrics.Registry.MustRegister(writes)

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	scheme.AddKnownTypes(groupVersion, &WebApp{}, &WebAppList{})
	metav1.AddToGroupVersion(scheme, groupVersion)

	managed := labels.SelectorFromSet(labels.Set{labelManaged: fieldManager})
	cacheOptions := cache.Options{
		SyncPeriod:       &resync,
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}: {Label: managed},
			&corev1.Service{}:    {Label: managed},
		},
	}
	if namespaces != "" {
		cacheOptions.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(namespaces, ",") {
			cacheOptions.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cacheOptions,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr, ExtraHandlers: map[string]http.Handler{"/healthz": ok}},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
	})
	if err != nil {
		log.Error(err, "manager")
		os.Exit(1)
	}
	r := &Reconciler{
		Client:         mgr.GetClient(),
		api:            mgr.GetAPIReader(),
		recorder:       mgr.GetEventRecorderFor(fieldManager), //nolint:staticcheck // core/v1 Events, as ours posts
		defaults:       Resources{CPU: cpu, Memory: memory},
		podLabels:      map[string]string{"environment": "production"},
		settle:         settle,
		applied:        map[childKey]appliedRecord{},
		status:         map[types.UID]WebAppStatus{},
		finalizerAdded: map[types.UID]bool{},
		rolloutStarted: map[types.UID]time.Time{},
		cleaned:        map[types.UID]bool{},
		uidOf:          map[types.NamespacedName]types.UID{},
	}
	owner := handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &WebApp{}, handler.OnlyControllerOwner())
	err = ctrl.NewControllerManagedBy(mgr).
		Named("webapp").
		For(&WebApp{}).
		Watches(&appsv1.Deployment{}, childEvents{owner, "Deployment", r.forgetChild}).
		Watches(&corev1.Service{}, childEvents{owner, "Service", r.forgetChild}).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
	if err != nil {
		log.Error(err, "controller")
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
