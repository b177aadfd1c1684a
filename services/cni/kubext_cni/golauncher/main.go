// kubext-bridge CNI plugin launcher, compiled: forwards one CNI call to the kubext-cni
// node daemon, exactly as kubext_cni/shim.py does, in a fraction of Python's start time.
//
// Standard library only. The daemon's socket path lives in socketField, which
// kubext_cni.install patches in the copied binary (a NUL-padded field after a marker);
// KUBEXT_CNI_SOCKET overrides it. VERSION is answered locally; no daemon is error 11
// ("try again later"); a daemon in another network namespace is error 106.
//
// Wire format (kubext_cni.daemon reads the same): request = "KXC1", env count, then
// length-prefixed key/value pairs, stdin, and this process's netns (st_dev, st_ino), all
// big-endian; reply = status byte (0 result, 1 netns mismatch), exit code, stdout, stderr.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	defaultSocket = "/run/kubext-cni/plugin.sock"
	nul16         = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	nul256        = nul16 + nul16 + nul16 + nul16 + nul16 + nul16 + nul16 + nul16 +
		nul16 + nul16 + nul16 + nul16 + nul16 + nul16 + nul16 + nul16
)

// A marker and a 256-byte NUL-padded field, one constant in the binary: install writes the
// socket path into the field of its copy; all NULs means defaultSocket.
var socketField = "KXSOCK1:" + nul256

// Kept equal to kubext_cni.core.versions.SUPPORTED (a test compares them).
var supported = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

const (
	magic           = "KXC1"
	replyResult     = 0
	replyNetnsOther = 1
	tryAgainLater   = 11  // kubext_cni.core.errors.TRY_AGAIN_LATER
	daemonUnusable  = 106 // kubext_cni.core.errors.DAEMON_UNUSABLE
	timeout         = 600 * time.Second
	connectAttempts = 40
)

func socketPath() string {
	if v, ok := os.LookupEnv("KUBEXT_CNI_SOCKET"); ok && v != "" {
		return v
	}
	field := socketField[len("KXSOCK1:"):]
	if i := strings.IndexByte(field, 0); i >= 0 {
		field = field[:i]
	}
	if field == "" {
		return defaultSocket
	}
	return field
}

func readStdin() []byte {
	var termios syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TCGETS, uintptr(unsafe.Pointer(&termios)))
	if errno == 0 { // a terminal: nothing is piped in
		return nil
	}
	data, _ := io.ReadAll(os.Stdin)
	return data
}

func errorJSON(code int, msg, details string) []byte {
	body := struct {
		CNIVersion string `json:"cniVersion"`
		Code       int    `json:"code"`
		Msg        string `json:"msg"`
		Details    string `json:"details"`
	}{"1.1.0", code, msg, details}
	out, _ := json.MarshalIndent(body, "", "    ")
	return append(out, '\n')
}

func version(stdin []byte) []byte {
	requested := "1.1.0"
	var body map[string]any
	if len(stdin) == 0 {
		stdin = []byte("{}")
	}
	if json.Unmarshal(stdin, &body) == nil {
		if v, ok := body["cniVersion"].(string); ok && v != "" {
			requested = v
		}
	}
	out, _ := json.Marshal(struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}{requested, supported})
	return append(out, '\n')
}

func encodeRequest(env []string, stdin []byte, dev, ino uint64) []byte {
	size := 8 + 4 + len(stdin) + 16
	for _, kv := range env {
		size += 8 + len(kv)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, magic...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(env)))
	blob := func(s []byte) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
		buf = append(buf, s...)
	}
	for _, kv := range env {
		key, value, _ := strings.Cut(kv, "=")
		blob([]byte(key))
		blob([]byte(value))
	}
	blob(stdin)
	buf = binary.BigEndian.AppendUint64(buf, dev)
	return binary.BigEndian.AppendUint64(buf, ino)
}

type reply struct {
	status byte
	code   int32
	stdout []byte
	stderr []byte
}

var errNoDaemon = errors.New("no daemon")

func dial(path string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			return conn, nil
		}
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errNoDaemon
		}
		// A full backlog under a burst of calls: wait, retry.
		if !errors.Is(err, syscall.EAGAIN) || attempt == connectAttempts-1 {
			return nil, err
		}
		time.Sleep(time.Duration(10*(attempt+1)) * time.Millisecond)
	}
}

func askDaemon(path string, request []byte) (*reply, error) {
	conn, err := dial(path)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(request)), uint32(len(request)))
	if _, err := conn.Write(append(frame, request...)); err != nil {
		return nil, err
	}
	var head [4]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return nil, fmt.Errorf("daemon closed the connection: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, fmt.Errorf("daemon closed the connection: %w", err)
	}
	if len(body) < 13 {
		return nil, errors.New("truncated reply")
	}
	out := binary.BigEndian.Uint32(body[5:9])
	if uint64(len(body)) < 13+uint64(out) {
		return nil, errors.New("truncated reply")
	}
	errLen := binary.BigEndian.Uint32(body[9+out : 13+out])
	if uint64(len(body)) < 13+uint64(out)+uint64(errLen) {
		return nil, errors.New("truncated reply")
	}
	return &reply{
		status: body[0],
		code:   int32(binary.BigEndian.Uint32(body[1:5])),
		stdout: body[9 : 9+out],
		stderr: body[13+out : 13+out+errLen],
	}, nil
}

func run() int {
	stdin := readStdin()
	if os.Getenv("CNI_COMMAND") == "VERSION" {
		os.Stdout.Write(version(stdin))
		return 0
	}
	path := socketPath()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		os.Stdout.Write(errorJSON(tryAgainLater, "kubext-cni launcher cannot read its netns", err.Error()))
		return 1
	}
	r, err := askDaemon(path, encodeRequest(os.Environ(), stdin, st.Dev, st.Ino))
	switch {
	case errors.Is(err, errNoDaemon):
		os.Stdout.Write(errorJSON(tryAgainLater, "kubext-cni daemon not reachable", "no daemon at "+path))
		return 1
	case err != nil: // connected but the exchange broke: the daemon died mid-call or timed out
		os.Stdout.Write(errorJSON(tryAgainLater, "kubext-cni daemon failed", err.Error()))
		return 1
	case r.status != replyResult:
		os.Stdout.Write(errorJSON(daemonUnusable,
			"kubext-cni daemon runs in another network namespace",
			"run the daemon with hostNetwork, in the runtime's namespace"))
		return 1
	}
	os.Stdout.Write(r.stdout)
	os.Stderr.Write(r.stderr)
	return int(r.code)
}

func main() {
	os.Exit(run())
}
