// Command stub-kubelet is the kubelet's side of the device-plugin API v1beta1, on the upstream
// k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1 package, for tests and the benchmark: it serves
// Registration on <dir>/kubelet.sock, dials each registering plugin as the kubelet's device
// manager does (connect and GetDevicePluginOptions inside Register, then ListAndWatch in the
// background, every update recorded with the time it arrived), and answers commands given as
// JSON lines on stdin with one JSON line each on stdout. Times are CLOCK_MONOTONIC nanoseconds,
// the clock of Python's time.monotonic_ns(), so a test can compare them with its own.
//
// Commands ({"cmd": NAME, ...}; every answer has "cmd" and either "ok": true or "error"):
//
//	registration {after, timeout}            the first registration with seq > after
//	options {resource}                       GetDevicePluginOptions
//	update {resource, after, timeout}        the first ListAndWatch update with seq > after
//	preferred {resource, available, must_include, size}
//	allocate {resource, containers: [[id...]...]}
//	allocate_bench {resource, ids, n}        n Allocate calls one after another; latencies in ns
//	restart {resources, timeout}             a kubelet restart: Registration stopped, every socket
//	                                         in dir removed, kubelet.sock served again; then the
//	                                         time until each resource registered again
//	quit
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// The kubelet's own bound for connecting to a registering plugin.
const connectTimeout = 10 * time.Second

func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

type options struct {
	PreStartRequired                bool `json:"pre_start_required"`
	GetPreferredAllocationAvailable bool `json:"get_preferred_allocation_available"`
}

func optionsOf(o *pluginapi.DevicePluginOptions) options {
	return options{o.GetPreStartRequired(), o.GetGetPreferredAllocationAvailable()}
}

type registration struct {
	Seq      int     `json:"seq"`
	Resource string  `json:"resource"`
	Endpoint string  `json:"endpoint"`
	Version  string  `json:"version"`
	Options  options `json:"options"`
	MonoNs   int64   `json:"mono_ns"`
}

type device struct {
	ID     string  `json:"id"`
	Health string  `json:"health"`
	NUMA   []int64 `json:"numa"`
}

type update struct {
	Seq      int      `json:"seq"`
	Endpoint string   `json:"endpoint"`
	MonoNs   int64    `json:"mono_ns"`
	Devices  []device `json:"devices"`
}

// client is the connection to one registered plugin endpoint.
type client struct {
	endpoint string
	conn     *grpc.ClientConn
	api      pluginapi.DevicePluginClient
	watch    context.Context // ends the ListAndWatch stream when the client is closed
	cancel   context.CancelFunc
}

type kubelet struct {
	pluginapi.UnimplementedRegistrationServer
	dir string

	mu      sync.Mutex
	changed *sync.Cond
	server  *grpc.Server
	regs    []registration
	clients map[string]*client  // by resource
	updates map[string][]update // by resource, across re-registrations
}

func newKubelet(dir string) *kubelet {
	k := &kubelet{dir: dir, clients: map[string]*client{}, updates: map[string][]update{}}
	k.changed = sync.NewCond(&k.mu)
	return k
}

func (k *kubelet) serve() error {
	path := filepath.Join(k.dir, "kubelet.sock")
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(server, k)
	k.mu.Lock()
	k.server = server
	k.mu.Unlock()
	go func() { _ = server.Serve(lis) }()
	return nil
}

// Register does what the kubelet's device manager does: check the version, connect to the
// endpoint and ask its options before answering, then watch its devices in the background.
func (k *kubelet) Register(ctx context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	if r.Version != pluginapi.Version {
		return nil, fmt.Errorf("unsupported device plugin API version %q (want %s)", r.Version, pluginapi.Version)
	}
	if r.ResourceName == "" || r.Endpoint == "" {
		return nil, fmt.Errorf("resource name and endpoint are required")
	}
	at := monoNow()
	c, err := k.connect(r.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", r.Endpoint, err)
	}
	optsCtx, done := context.WithTimeout(ctx, connectTimeout)
	defer done()
	if _, err := c.api.GetDevicePluginOptions(optsCtx, &pluginapi.Empty{}); err != nil {
		c.close()
		return nil, fmt.Errorf("GetDevicePluginOptions of %s: %w", r.Endpoint, err)
	}
	k.mu.Lock()
	if old := k.clients[r.ResourceName]; old != nil {
		old.close()
	}
	k.clients[r.ResourceName] = c
	k.regs = append(k.regs, registration{
		Seq: len(k.regs) + 1, Resource: r.ResourceName, Endpoint: r.Endpoint,
		Version: r.Version, Options: optionsOf(r.Options), MonoNs: at,
	})
	k.changed.Broadcast()
	k.mu.Unlock()
	go k.listAndWatch(r.ResourceName, c)
	return &pluginapi.Empty{}, nil
}

func (k *kubelet) connect(endpoint string) (*client, error) {
	path := filepath.Join(k.dir, endpoint)
	ctx, done := context.WithTimeout(context.Background(), connectTimeout)
	defer done()
	//nolint:staticcheck // the kubelet itself dials with DialContext and WithBlock
	conn, err := grpc.DialContext(ctx, path,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return nil, err
	}
	watch, cancel := context.WithCancel(context.Background())
	return &client{endpoint: endpoint, conn: conn, api: pluginapi.NewDevicePluginClient(conn), watch: watch, cancel: cancel}, nil
}

func (c *client) close() {
	c.cancel()
	_ = c.conn.Close()
}

func (k *kubelet) listAndWatch(resource string, c *client) {
	stream, err := c.api.ListAndWatch(c.watch, &pluginapi.Empty{})
	if err != nil {
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return // the plugin went away or was replaced; a new registration starts a new watch
		}
		at := monoNow()
		devices := make([]device, 0, len(resp.Devices))
		for _, d := range resp.Devices {
			numa := []int64{}
			for _, n := range d.GetTopology().GetNodes() {
				numa = append(numa, n.GetID())
			}
			devices = append(devices, device{ID: d.ID, Health: d.Health, NUMA: numa})
		}
		k.mu.Lock()
		list := k.updates[resource]
		k.updates[resource] = append(list, update{Seq: len(list) + 1, Endpoint: c.endpoint, MonoNs: at, Devices: devices})
		k.changed.Broadcast()
		k.mu.Unlock()
	}
}

// waitFor blocks until found returns true or the timeout passes; k.mu is held while found runs.
func (k *kubelet) waitFor(timeout time.Duration, found func() bool) bool {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { k.mu.Lock(); k.changed.Broadcast(); k.mu.Unlock() })
	defer timer.Stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	for !found() {
		if !time.Now().Before(deadline) {
			return false
		}
		k.changed.Wait()
	}
	return true
}

// restart is what a restarted kubelet does to the dir: its Registration server goes, every
// socket in the dir is removed (the kubelet empties the dir but for its checkpoint), and
// kubelet.sock is served again.
func (k *kubelet) restart() (int64, []string, error) {
	k.mu.Lock()
	server := k.server
	for name, c := range k.clients {
		c.close()
		delete(k.clients, name)
	}
	k.mu.Unlock()
	if server != nil {
		server.Stop()
	}
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return 0, nil, err
	}
	removed := []string{}
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 {
			if err := os.Remove(filepath.Join(k.dir, e.Name())); err == nil {
				removed = append(removed, e.Name())
			}
		}
	}
	back := monoNow() // before listening: a registration can never look older than the restart
	if err := k.serve(); err != nil {
		return 0, removed, err
	}
	return back, removed, nil
}

func (k *kubelet) plugin(resource string) (*client, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.clients[resource]
	if c == nil {
		return nil, fmt.Errorf("no plugin registered for %q", resource)
	}
	return c, nil
}

type command struct {
	Cmd         string     `json:"cmd"`
	Resource    string     `json:"resource"`
	Resources   []string   `json:"resources"`
	After       int        `json:"after"`
	Timeout     float64    `json:"timeout"`
	Available   []string   `json:"available"`
	MustInclude []string   `json:"must_include"`
	Size        int32      `json:"size"`
	Containers  [][]string `json:"containers"`
	IDs         []string   `json:"ids"`
	N           int        `json:"n"`
}

func (c command) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 5 * time.Second
	}
	return time.Duration(c.Timeout * float64(time.Second))
}

type mount struct {
	ContainerPath string `json:"container_path"`
	HostPath      string `json:"host_path"`
	ReadOnly      bool   `json:"read_only"`
}

type deviceSpec struct {
	ContainerPath string `json:"container_path"`
	HostPath      string `json:"host_path"`
	Permissions   string `json:"permissions"`
}

type containerResponse struct {
	Envs        map[string]string `json:"envs"`
	Mounts      []mount           `json:"mounts"`
	Devices     []deviceSpec      `json:"devices"`
	Annotations map[string]string `json:"annotations"`
	CDIDevices  []string          `json:"cdi_devices"`
}

func containerResponseOf(r *pluginapi.ContainerAllocateResponse) containerResponse {
	out := containerResponse{
		Envs: r.GetEnvs(), Annotations: r.GetAnnotations(),
		Mounts: []mount{}, Devices: []deviceSpec{}, CDIDevices: []string{},
	}
	if out.Envs == nil {
		out.Envs = map[string]string{}
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	for _, m := range r.GetMounts() {
		out.Mounts = append(out.Mounts, mount{m.ContainerPath, m.HostPath, m.ReadOnly})
	}
	for _, d := range r.GetDevices() {
		out.Devices = append(out.Devices, deviceSpec{d.ContainerPath, d.HostPath, d.Permissions})
	}
	for _, d := range r.GetCdiDevices() {
		out.CDIDevices = append(out.CDIDevices, d.Name)
	}
	return out
}

// rpcError is a gRPC error as JSON: its code's name (NotFound, ...) and message.
func rpcError(err error) map[string]any {
	s, _ := status.FromError(err)
	return map[string]any{"code": s.Code().String(), "message": s.Message()}
}

func allocateRequest(containers [][]string) *pluginapi.AllocateRequest {
	req := &pluginapi.AllocateRequest{}
	for _, ids := range containers {
		req.ContainerRequests = append(req.ContainerRequests, &pluginapi.ContainerAllocateRequest{DevicesIds: ids})
	}
	return req
}

func (k *kubelet) handle(c command) map[string]any {
	ctx, done := context.WithTimeout(context.Background(), c.timeout())
	defer done()
	switch c.Cmd {
	case "registration":
		var got *registration
		ok := k.waitFor(c.timeout(), func() bool {
			for i := range k.regs {
				if k.regs[i].Seq > c.After {
					got = &k.regs[i]
					return true
				}
			}
			return false
		})
		if !ok {
			return map[string]any{"error": fmt.Sprintf("no registration after seq %d within %s", c.After, c.timeout())}
		}
		return map[string]any{"registration": *got}
	case "update":
		var got *update
		ok := k.waitFor(c.timeout(), func() bool {
			list := k.updates[c.Resource]
			if len(list) > c.After {
				got = &list[c.After]
				return true
			}
			return false
		})
		if !ok {
			return map[string]any{"error": fmt.Sprintf("no ListAndWatch update of %q after seq %d within %s", c.Resource, c.After, c.timeout())}
		}
		return map[string]any{"update": *got}
	case "restart":
		back, removed, err := k.restart()
		if err != nil {
			return map[string]any{"error": err.Error(), "removed": removed}
		}
		again := map[string]float64{}
		missing := []string{}
		for _, name := range c.Resources {
			var at int64
			ok := k.waitFor(c.timeout(), func() bool {
				for _, r := range k.regs {
					if r.Resource == name && r.MonoNs >= back && k.clients[name] != nil {
						at = r.MonoNs
						return true
					}
				}
				return false
			})
			if ok {
				again[name] = float64(at-back) / 1e9
			} else {
				missing = append(missing, name)
			}
		}
		out := map[string]any{"back_mono_ns": back, "removed": removed, "reregistered_after_s": again}
		if len(missing) > 0 {
			out["error"] = fmt.Sprintf("not registered again within %s: %v", c.timeout(), missing)
		}
		return out
	}
	p, err := k.plugin(c.Resource)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	switch c.Cmd {
	case "options":
		o, err := p.api.GetDevicePluginOptions(ctx, &pluginapi.Empty{})
		if err != nil {
			return map[string]any{"error": rpcError(err)}
		}
		return map[string]any{"options": optionsOf(o)}
	case "preferred":
		resp, err := p.api.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{
			ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{{
				AvailableDeviceIDs: c.Available, MustIncludeDeviceIDs: c.MustInclude, AllocationSize: c.Size,
			}},
		})
		if err != nil {
			return map[string]any{"error": rpcError(err)}
		}
		ids := []string{}
		for _, r := range resp.ContainerResponses {
			ids = append(ids, r.DeviceIDs...)
		}
		return map[string]any{"device_ids": ids}
	case "allocate":
		resp, err := p.api.Allocate(ctx, allocateRequest(c.Containers))
		if err != nil {
			return map[string]any{"error": rpcError(err)}
		}
		containers := []containerResponse{}
		for _, r := range resp.ContainerResponses {
			containers = append(containers, containerResponseOf(r))
		}
		return map[string]any{"containers": containers}
	case "allocate_bench":
		req := allocateRequest([][]string{c.IDs})
		latencies := make([]int64, 0, c.N)
		for i := 0; i < c.N; i++ {
			t0 := monoNow()
			if _, err := p.api.Allocate(context.Background(), req); err != nil {
				return map[string]any{"error": rpcError(err), "done": i}
			}
			latencies = append(latencies, monoNow()-t0)
		}
		sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
		return map[string]any{"latencies_ns": latencies}
	}
	return map[string]any{"error": fmt.Sprintf("unknown command %q", c.Cmd)}
}

func main() {
	dir := flag.String("dir", "", "the device-plugin dir: kubelet.sock is served there (required)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "stub-kubelet: -dir is required")
		os.Exit(2)
	}
	k := newKubelet(*dir)
	if err := k.serve(); err != nil {
		fmt.Fprintf(os.Stderr, "stub-kubelet: serving %s/kubelet.sock: %v\n", *dir, err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]any{"cmd": "ready", "ok": true, "socket": filepath.Join(*dir, "kubelet.sock")})
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var c command
		var answer map[string]any
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			answer = map[string]any{"error": fmt.Sprintf("not a JSON command: %v", err)}
		} else if c.Cmd == "quit" {
			break
		} else {
			answer = k.handle(c)
		}
		answer["cmd"] = c.Cmd
		if _, failed := answer["error"]; !failed {
			answer["ok"] = true
		}
		_ = out.Encode(answer)
	}
	k.mu.Lock()
	if k.server != nil {
		k.server.Stop()
	}
	k.mu.Unlock()
	_ = os.Remove(filepath.Join(*dir, "kubelet.sock"))
}
