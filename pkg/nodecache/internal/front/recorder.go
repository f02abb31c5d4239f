package front

import "github.com/miekg/dns"

// recorder keeps the bytes the chain wrote, exactly as sent.
type recorder struct {
	dns.ResponseWriter
	resp []byte
}

// WriteMsg packs m and writes it, as dns.Server's writer does.
func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}

func (r *recorder) Write(b []byte) (int, error) {
	r.resp = append(r.resp[:0], b...)
	return r.ResponseWriter.Write(b)
}
