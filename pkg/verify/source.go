package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxLine bounds one JSON line: flows with L7 data run to a few KiB.
const maxLine = 4 << 20

var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// Incomplete is the error of a read that returned flows but not all of
// them: Hubble Relay could not reach a node, or events were lost. A verdict
// on such a record could pass a node whose failures went unrecorded, so
// verify fails on it, with Hubble's own words.
type Incomplete struct {
	Problems []string
}

func (e *Incomplete) Error() string {
	return "the flow record is incomplete: " + strings.Join(e.Problems, "; ")
}

// problem is what resp says is missing from the record ("": nothing).
// A node that Relay connects to, or that left the cluster, misses nothing.
func problem(resp *observerpb.GetFlowsResponse) string {
	if ns := resp.GetNodeStatus(); ns != nil {
		switch ns.GetStateChange() {
		case relaypb.NodeState_NODE_UNAVAILABLE, relaypb.NodeState_NODE_ERROR:
			msg := fmt.Sprintf("Hubble Relay: %s for %s", ns.GetStateChange(), strings.Join(ns.GetNodeNames(), ", "))
			if ns.GetMessage() != "" {
				msg += ": " + ns.GetMessage()
			}
			return msg
		}
	}
	if le := resp.GetLostEvents(); le != nil {
		msg := fmt.Sprintf("%d events lost at %s", le.GetNumEventsLost(), le.GetSource())
		if resp.GetNodeName() != "" {
			msg += " on " + resp.GetNodeName()
		}
		if le.GetCpu() != nil {
			msg += fmt.Sprintf(" (CPU %d)", le.GetCpu().GetValue())
		}
		return msg
	}
	return ""
}

// incomplete is nil when problems is empty.
func incomplete(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return &Incomplete{Problems: problems}
}

// ReadFlows reads `hubble observe -o jsonpb` output: one GetFlowsResponse per
// line, or one bare Flow per line (the other shape Hubble tools write).
// Node status and lost events are not flows: a node Relay could not reach
// or lost events make the error an *Incomplete, returned with the flows.
func ReadFlows(r io.Reader) ([]*observerpb.GetFlowsResponse, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []*observerpb.GetFlowsResponse
	var problems []string
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(trimSpace(line)) == 0 {
			continue
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(line, &keys); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON object: %w", n, err)
		}
		resp := &observerpb.GetFlowsResponse{}
		if _, wrapped := keys["flow"]; wrapped || keys["node_status"] != nil || keys["lost_events"] != nil || keys["nodeStatus"] != nil || keys["lostEvents"] != nil {
			if err := unmarshal.Unmarshal(line, resp); err != nil {
				return nil, fmt.Errorf("line %d: not a Hubble GetFlowsResponse: %w", n, err)
			}
			if resp.GetFlow() == nil {
				if p := problem(resp); p != "" {
					problems = append(problems, p)
				}
				continue
			}
		} else {
			f := &flowpb.Flow{}
			if err := unmarshal.Unmarshal(line, f); err != nil {
				return nil, fmt.Errorf("line %d: not a Hubble flow: %w", n, err)
			}
			resp.ResponseTypes = &observerpb.GetFlowsResponse_Flow{Flow: f}
			resp.NodeName, resp.Time = f.GetNodeName(), f.GetTime()
		}
		out = append(out, resp)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read flows: %w", err)
	}
	return out, incomplete(problems)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// Window keeps the flows no older than d before the newest one; d <= 0
// keeps all.
func Window(flows []*observerpb.GetFlowsResponse, d time.Duration) []*observerpb.GetFlowsResponse {
	if d <= 0 || len(flows) == 0 {
		return flows
	}
	newest := Newest(flows)
	var out []*observerpb.GetFlowsResponse
	for _, f := range flows {
		if !f.GetFlow().GetTime().AsTime().Before(newest.Add(-d)) {
			out = append(out, f)
		}
	}
	return out
}

// Newest is the time of the newest flow (zero: none).
func Newest(flows []*observerpb.GetFlowsResponse) time.Time {
	var newest time.Time
	for _, f := range flows {
		if t := f.GetFlow().GetTime().AsTime(); t.After(newest) {
			newest = t
		}
	}
	return newest
}

// Since keeps the flows at or after t.
func Since(flows []*observerpb.GetFlowsResponse, t time.Time) []*observerpb.GetFlowsResponse {
	var out []*observerpb.GetFlowsResponse
	for _, f := range flows {
		if !f.GetFlow().GetTime().AsTime().Before(t) {
			out = append(out, f)
		}
	}
	return out
}

// FromServer reads the flows of the last `since` from a Hubble observer
// (Relay, or an agent's socket as unix:///path), with the server filtering
// to DNS traffic. Plaintext: Relay's default in-cluster port, or a
// port-forward.
func FromServer(ctx context.Context, addr string, since time.Duration, c Config) ([]*observerpb.GetFlowsResponse, error) {
	return Flows(ctx, addr, since, []*flowpb.FlowFilter{
		{DestinationPort: c.dnsPorts()},
		{SourcePort: c.dnsPorts()}, // answers, for the drop check
		{Protocol: []string{"dns"}},
	})
}

// Flows reads the flows of the last `since` that match any of whitelist
// from a Hubble observer, as FromServer does. Like ReadFlows, it returns
// the flows with an *Incomplete when Relay reports a node it could not
// reach or lost events.
func Flows(ctx context.Context, addr string, since time.Duration, whitelist []*flowpb.FlowFilter) ([]*observerpb.GetFlowsResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("failed to connect to Hubble at %s: %w", addr, err)
	}
	defer conn.Close()
	now := time.Now()
	req := &observerpb.GetFlowsRequest{
		Since:     timestamppb.New(now.Add(-since)),
		Until:     timestamppb.New(now),
		Whitelist: whitelist,
	}
	stream, err := observerpb.NewObserverClient(conn).GetFlows(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("failed to get flows from %s: %w", addr, err)
	}
	var out []*observerpb.GetFlowsResponse
	var problems []string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, incomplete(problems)
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read flows from %s: %w", addr, err)
		}
		if resp.GetFlow() != nil {
			out = append(out, resp)
		} else if p := problem(resp); p != "" {
			problems = append(problems, p)
		}
	}
}
