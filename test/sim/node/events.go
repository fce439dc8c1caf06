package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/rs/xid"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// As machined's event stream (v1alpha1_controller.go: NewEvents(1000, 10)): a ring of 1000
// events per boot, of which all but a safety gap of 10 can be replayed.
const (
	eventCapacity = 1000
	eventGap      = 10
)

type event struct {
	id      xid.ID
	actorID string
	typeURL string
	payload proto.Message
}

func (e event) wire() (*machine.Event, error) {
	var value []byte
	if e.payload != nil {
		var err error
		if value, err = proto.Marshal(e.payload); err != nil {
			return nil, err
		}
	}
	return &machine.Event{Data: &anypb.Any{TypeUrl: e.typeURL, Value: value}, Id: e.id.String(), ActorId: e.actorID}, nil
}

func newEvent(payload proto.Message, actorID string) event {
	typeURL := ""
	if payload != nil {
		typeURL = fmt.Sprintf("talos/runtime/%s", payload.ProtoReflect().Descriptor().FullName())
	}
	return event{id: xid.New(), actorID: actorID, typeURL: typeURL, payload: payload}
}

// eventLog is one boot's event stream: it starts empty at every boot, as machined's does.
type eventLog struct {
	mu      sync.Mutex
	events  []event // the last eventCapacity events
	written int64   // events ever published; events[0] is number written-len(events)
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) publish(e event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	if len(l.events) > eventCapacity {
		l.events = l.events[len(l.events)-eventCapacity:]
	}
	l.written++
	close(l.changed)
	l.changed = make(chan struct{})
}

// start is the position a watcher begins at, as machined's Events.Watch computes it.
func (l *eventLog) start(req *machine.EventsRequest) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pos := l.written
	minPos := max(l.written-int64(eventCapacity-eventGap), 0)
	at := func(p int64) event { return l.events[p-(l.written-int64(len(l.events)))] }
	switch {
	case req.GetTailEvents() != 0:
		if req.GetTailEvents() < 0 {
			pos = minPos
		} else {
			pos = max(pos-int64(req.GetTailEvents()), minPos)
		}
	case req.GetTailId() != "":
		tail, err := xid.FromString(req.GetTailId())
		if err != nil {
			return 0, fmt.Errorf("error parsing tail_id: %w", err)
		}
		p := minPos
		for p < pos && at(p).id.Compare(tail) <= 0 {
			p++
		}
		pos = p
	case req.GetTailSeconds() != 0:
		since := time.Now().Add(-time.Duration(req.GetTailSeconds()) * time.Second)
		p := minPos
		for p < pos && !at(p).id.Time().After(since) {
			p++
		}
		pos = p
	}
	return pos, nil
}

// next waits for the event at pos; ok is false when the watcher fell out of the ring.
func (l *eventLog) next(pos int64, done <-chan struct{}) (event, bool) {
	for {
		l.mu.Lock()
		first := l.written - int64(len(l.events))
		if pos < first {
			l.mu.Unlock()
			return event{}, false
		}
		if pos < l.written {
			e := l.events[pos-first]
			l.mu.Unlock()
			return e, true
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-done:
			return event{}, false
		}
	}
}

// publish adds an event to the current boot's stream.
func (n *Node) publish(payload proto.Message, actorID string) {
	n.mu.Lock()
	log := n.events
	n.mu.Unlock()
	log.publish(newEvent(payload, actorID))
}

// Events streams runtime events as machined does: an empty hello event first, then the buffered
// events the request asks for, then live ones, until the client goes or the node goes down.
func (n *Node) Events(req *machine.EventsRequest, stream grpc.ServerStreamingServer[machine.Event]) error {
	n.mu.Lock()
	log, configured := n.events, n.osCACert != nil
	n.mu.Unlock()
	if !configured {
		return errMaintenanceUnimplemented("Events")
	}
	hello, err := newEvent(nil, req.GetWithActorId()).wire()
	if err != nil {
		return err
	}
	if err := stream.Send(hello); err != nil {
		return err
	}
	pos, err := log.start(req)
	if err != nil {
		return err
	}
	for {
		e, ok := log.next(pos, stream.Context().Done())
		if !ok {
			return stream.Context().Err()
		}
		pos++
		if req.GetWithActorId() != "" && e.actorID != req.GetWithActorId() {
			continue
		}
		msg, err := e.wire()
		if err != nil {
			return err
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}
