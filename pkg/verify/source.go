package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxLine bounds one JSON line: flows with L7 data run to a few KiB.
const maxLine = 4 << 20

var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// ReadFlows reads `hubble observe -o jsonpb` output: one GetFlowsResponse per
// line, or one bare Flow per line (the other shape Hubble tools write).
// Lines that are not flows (node status, lost events) are skipped.
func ReadFlows(r io.Reader) ([]*observerpb.GetFlowsResponse, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []*observerpb.GetFlowsResponse
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
	return out, nil
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
// from a Hubble observer, as FromServer does.
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
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read flows from %s: %w", addr, err)
		}
		if resp.GetFlow() != nil {
			out = append(out, resp)
		}
	}
}
