package agent

import (
	"fmt"
	"net"
	"os"
	"time"
)

// OpenSerial opens a serial device (a virtio-serial port in a VM, say) as
// the MQTT connection. The host end is a socket that relays to the broker.
func OpenSerial(path string) (net.Conn, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("agent: serial %s: %w", path, err)
	}
	return &serialConn{f: f}, nil
}

type serialConn struct{ f *os.File }

func (c *serialConn) Read(b []byte) (int, error)         { return c.f.Read(b) }
func (c *serialConn) Write(b []byte) (int, error)        { return c.f.Write(b) }
func (c *serialConn) Close() error                       { return c.f.Close() }
func (c *serialConn) LocalAddr() net.Addr                { return serialAddr(c.f.Name()) }
func (c *serialConn) RemoteAddr() net.Addr               { return serialAddr(c.f.Name()) }
func (c *serialConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *serialConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *serialConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

type serialAddr string

func (a serialAddr) Network() string { return "serial" }
func (a serialAddr) String() string  { return string(a) }
