package front

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/hot"
)

// udpReader reads a UDP socket for its dns.Server and answers, in the
// reading goroutine, every query the configuration's store can answer;
// it hands the others to the front's workers, which serve them as
// dns.Server would, and what dns.Server would not serve (a header or a
// message it refuses or cannot unpack) to the server, which answers it
// as always. It owns its read buffer: a query it answers costs no
// allocation but the socket address and the server never sees it.
type udpReader struct {
	dns.Reader
	f        *Front
	paced    pacedReader
	buf      []byte
	out      []byte
	inFlight sync.WaitGroup // queries handed to workers, not yet answered
}

func (r *udpReader) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *dns.SessionUDP, error) {
	if r.buf == nil {
		r.buf = make([]byte, dns.MinMsgSize) // the dns.Server's own size
	}
	for {
		r.paced.pace()
		// No read deadline: the server's shutdown sets one in the past to
		// unblock the read, and setting ours would undo it.
		n, s, err := dns.ReadFromSessionUDP(conn, r.buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				// Shutdown: dns.Server waits for its own queries in
				// flight before it closes the socket; so for ours.
				r.inFlight.Wait()
			}
			return nil, nil, err
		}
		q := r.buf[:n]
		if st := r.f.serving.Load().hot; st != nil && n >= 12 {
			ua, _ := s.RemoteAddr().(*net.UDPAddr)
			var ok bool
			if r.out, ok = st.Answer(q, hot.UDP, ua != nil && ua.IP.To4() == nil, r.out); ok {
				_, _ = dns.WriteToSessionUDP(conn, r.out, s)
				continue
			}
		}
		q = append([]byte(nil), q...) // the worker's or the server's: the buffer is read into again
		if m := accept(q); m != nil {
			r.f.work.do(job{conn: conn, s: s, m: m, wg: &r.inFlight})
			continue
		}
		return q, s, nil
	}
}

// accept unpacks q as dns.Server does, if dns.Server would serve it: nil
// for what its default accept function refuses or ignores and for what
// does not unpack, which dns.Server answers (or drops) itself.
func accept(q []byte) *dns.Msg {
	if len(q) < 12 {
		return nil
	}
	h := dns.Header{
		Id: binary.BigEndian.Uint16(q), Bits: binary.BigEndian.Uint16(q[2:]),
		Qdcount: binary.BigEndian.Uint16(q[4:]), Ancount: binary.BigEndian.Uint16(q[6:]),
		Nscount: binary.BigEndian.Uint16(q[8:]), Arcount: binary.BigEndian.Uint16(q[10:]),
	}
	if dns.DefaultMsgAcceptFunc(h) != dns.MsgAccept {
		return nil
	}
	m := new(dns.Msg)
	if m.Unpack(q) != nil {
		return nil
	}
	return m
}

// errQueryLimit ends a connection that has carried its MaxTCPQueries.
var errQueryLimit = errors.New("front: the connection carried its query limit")

// tcpReader is the TCP connection's reader (one per connection): it
// answers from the store as udpReader does, counting those answers
// towards the connection's query limit.
type tcpReader struct {
	dns.Reader
	f      *Front
	limit  int           // queries a connection may carry; 0 or less: no limit
	idle   time.Duration // read timeout once a query was answered here
	served int
	out    []byte
	frame  []byte
}

func (r *tcpReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	for {
		if r.limit > 0 && r.served >= r.limit {
			return nil, errQueryLimit
		}
		q, err := r.Reader.ReadTCP(conn, timeout)
		if err != nil {
			return nil, err
		}
		r.served++
		st := r.f.serving.Load().hot
		if st == nil {
			return q, nil
		}
		ta, _ := conn.RemoteAddr().(*net.TCPAddr)
		var ok bool
		if r.out, ok = st.Answer(q, hot.TCP, ta != nil && ta.IP.To4() == nil, r.out); !ok {
			return q, nil
		}
		if r.frame, err = writeTCP(conn, r.out, r.frame); err != nil {
			return nil, err
		}
		timeout = r.idle
	}
}

// writeTCP sends msg after its length in one write, as dns.Server does,
// in buf's storage; it returns the storage for the next.
func writeTCP(conn net.Conn, msg, buf []byte) ([]byte, error) {
	buf = binary.BigEndian.AppendUint16(buf[:0], uint16(len(msg))) // #nosec G115 -- a DNS message is at most 64 KiB
	buf = append(buf, msg...)
	_, err := conn.Write(buf)
	return buf, err
}
