package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ratatouille/rat/hub/broker"
)

// link is the hub's connection to the broker: publish sends a message to
// a device at qos (wait: until the broker has taken it, bounded; QoS 1).
type link interface {
	publish(topic string, payload []byte, qos byte, wait bool) error
	close()
}

// inlineLink is the embedded broker's inline client: a publish is handed to
// the broker in this goroutine, with no MQTT encoding and no TCP.
type inlineLink struct{ b *broker.Broker }

func (l inlineLink) publish(topic string, payload []byte, qos byte, _ bool) error {
	return l.b.Publish(topic, payload, qos)
}

func (inlineLink) close() {}

// pahoLink is an MQTT client session with an external broker (Mosquitto):
// one persistent session (clean session off, QoS 1) with one subscription,
// so the broker delivers each device's messages in order.
type pahoLink struct {
	c         paho.Client
	url       string
	connected chan struct{}
}

func newPahoLink(cfg Config, sub string, onMessage func(topic string, payload []byte), log *slog.Logger) *pahoLink {
	o := paho.NewClientOptions().AddBroker(cfg.MQTT).SetClientID("rat-hub-" + cfg.Fleet).SetUsername(cfg.MQTTUser).SetPassword(cfg.MQTTPassword).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(500 * time.Millisecond).
		SetMaxReconnectInterval(5 * time.Second).SetOrderMatters(true)
	connected := make(chan struct{}, 1)
	o.SetOnConnectHandler(func(c paho.Client) {
		t := c.Subscribe(sub, 1, func(_ paho.Client, m paho.Message) { onMessage(m.Topic(), m.Payload()) })
		t.Wait()
		if t.Error() != nil {
			log.Error("subscribe", "topic", sub, "err", t.Error())
			return
		}
		log.Info("hub connected to broker", "broker", cfg.MQTT)
		select {
		case connected <- struct{}{}:
		default:
		}
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) { log.Warn("hub lost the broker", "err", err) })
	return &pahoLink{c: paho.NewClient(o), url: cfg.MQTT, connected: connected}
}

// connect waits for the first connection and subscription (bounded).
func (l *pahoLink) connect() error {
	l.c.Connect()
	select {
	case <-l.connected:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("server: cannot connect to the broker at %s", l.url)
	}
}

func (l *pahoLink) publish(topic string, payload []byte, qos byte, wait bool) error {
	t := l.c.Publish(topic, qos, false, payload)
	if !wait {
		return nil // not waited for: a device resends what the hub does not answer
	}
	if !t.WaitTimeout(5 * time.Second) {
		return errors.New("publish timed out")
	}
	return t.Error()
}

func (l *pahoLink) close() { l.c.Disconnect(250) }
