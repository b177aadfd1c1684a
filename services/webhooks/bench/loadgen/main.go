// An open-loop HTTPS load generator for admission webhooks, standard library only.
//
//	loadgen -url https://127.0.0.1:8443/validate/pods -ca ca.crt -corpus reviews.jsonl \
//	        -rate 1000 -duration 10s -conns 32
//
// At a fixed -rate, requests start on a schedule whatever the server does, and each latency
// is measured from its scheduled start (no coordinated omission: a stalled server is charged
// for the queue it causes). With -rate 0 it runs closed-loop: -conns workers send back to back,
// which measures the most the server sustains. Prints one JSON object.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	URL        string  `json:"url"`
	Rate       float64 `json:"rate"`
	Sent       int64   `json:"sent"`
	OK         int64   `json:"ok"`
	Errors     int64   `json:"errors"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"`
	P50ms      float64 `json:"p50_ms"`
	P90ms      float64 `json:"p90_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	FirstError string  `json:"first_error,omitempty"`
}

func main() {
	url := flag.String("url", "", "webhook URL")
	caFile := flag.String("ca", "", "CA bundle (PEM) to trust")
	corpusFile := flag.String("corpus", "", "JSON lines, one AdmissionReview each")
	rate := flag.Float64("rate", 1000, "requests per second; 0 = closed loop")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	warmup := flag.Duration("warmup", 2*time.Second, "sent first, not measured")
	conns := flag.Int("conns", 32, "connections (and workers)")
	flag.Parse()

	pem, err := os.ReadFile(*caFile)
	check(err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		check(fmt.Errorf("no certificate in %s", *caFile))
	}
	corpus := readCorpus(*corpusFile)
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        *conns,
		MaxIdleConnsPerHost: *conns,
		MaxConnsPerHost:     *conns,
		// HTTP/1.1 for every server alike (the Python service speaks no HTTP/2).
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}

	var next atomic.Int64
	send := func() (time.Duration, error) {
		body := corpus[int(next.Add(1))%len(corpus)]
		start := time.Now()
		resp, err := client.Post(*url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return time.Since(start), err
	}
	run(send, *rate, *warmup, *conns, nil)
	res := run(send, *rate, *duration, *conns, &result{URL: *url, Rate: *rate})
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func run(send func() (time.Duration, error), rate float64, duration time.Duration, conns int, res *result) *result {
	var mu sync.Mutex
	var latencies []time.Duration
	var sent, ok, errs atomic.Int64
	var firstErr atomic.Value
	record := func(lat time.Duration, err error) {
		sent.Add(1)
		if err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		ok.Add(1)
		mu.Lock()
		latencies = append(latencies, lat)
		mu.Unlock()
	}
	begin := time.Now()
	var wg sync.WaitGroup
	if rate > 0 {
		// Open loop: a ticket per scheduled start; workers take tickets in order.
		tickets := make(chan time.Time, 100000)
		for i := 0; i < conns*4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for due := range tickets {
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
					_, err := send()
					record(time.Since(due), err)
				}
			}()
		}
		interval := time.Duration(float64(time.Second) / rate)
		total := int(rate * duration.Seconds())
		for i := 0; i < total; i++ {
			tickets <- begin.Add(time.Duration(i) * interval)
		}
		close(tickets)
	} else {
		deadline := begin.Add(duration)
		for i := 0; i < conns; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					record(send())
				}
			}()
		}
	}
	wg.Wait()
	if res == nil {
		return nil
	}
	elapsed := time.Since(begin)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		idx := int(p * float64(len(latencies)-1))
		return float64(latencies[idx].Microseconds()) / 1000
	}
	res.Sent, res.OK, res.Errors = sent.Load(), ok.Load(), errs.Load()
	res.Seconds = elapsed.Seconds()
	res.Throughput = float64(res.OK) / elapsed.Seconds()
	res.P50ms, res.P90ms, res.P99ms, res.MaxMs = pct(0.50), pct(0.90), pct(0.99), pct(1.0)
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	return res
}

func readCorpus(path string) [][]byte {
	f, err := os.Open(path)
	check(err)
	defer f.Close()
	var out [][]byte
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		if line := bytes.TrimSpace(scanner.Bytes()); len(line) > 0 {
			out = append(out, append([]byte(nil), line...))
		}
	}
	check(scanner.Err())
	if len(out) == 0 {
		check(fmt.Errorf("empty corpus %s", path))
	}
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
