package h2

import "strings"

// StreamOutcome is how a client's HTTP/2 stream ended, for archway_http2_streams_total.
type StreamOutcome uint8

const (
	// StreamCompleted: the gateway produced the whole response with the stream still open.
	StreamCompleted StreamOutcome = iota
	// StreamReset: the client reset the stream, or its connection ended, before the response
	// was whole.
	StreamReset
	// StreamRefused: refused before it started, over max_concurrent_streams (RST_STREAM
	// REFUSED_STREAM or PROTOCOL_ERROR).
	StreamRefused
	// NumStreamOutcomes is the number of outcomes.
	NumStreamOutcomes
)

// StreamOutcomeNames are the outcomes' label values.
var StreamOutcomeNames = [NumStreamOutcomes]string{StreamCompleted: "completed", StreamReset: "reset", StreamRefused: "refused"}

// countError receives x/net/http2's count of each protocol error it answers, named
// kind_CODE_reason ("stream_REFUSED_STREAM_over_max_streams_race"); the refusals of streams
// over the limit are the ones counted as outcomes.
func (srv *Server) countError(errType string) {
	if strings.HasSuffix(errType, "_over_max_streams") || strings.HasSuffix(errType, "_over_max_streams_race") {
		srv.streams[StreamRefused].Add(1)
	}
}

// Streams is the number of streams that ended with outcome o since start.
func (srv *Server) Streams(o StreamOutcome) uint64 { return srv.streams[o].Load() }
