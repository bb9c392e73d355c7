package channels

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/store"
)

// SandboxName is the provider name deliveries record for the sandbox.
const SandboxName = "sandbox"

// sandboxKeep is how many messages a Sandbox keeps in memory for Messages.
const sandboxKeep = 1000

// Sandbox is the default channel: it sends nothing and records exactly what
// would have been sent, one entry per message per Send call (so a delivery
// sent twice shows twice). With a database it records each message of a
// delivery as a sandbox_messages row before Send returns, as a real
// provider would have accepted it. In memory it keeps the last messages
// that have no such row: every message without a database, only the test
// sends (no delivery) with one.
//
// Concurrent Send calls share one INSERT (group commit), so a worker that
// sends many small groups at once costs one round trip, not one per group.
type Sandbox struct {
	records     *SandboxRecords // nil: in memory only
	log         *slog.Logger
	now         func() time.Time
	countryCode string // channels.twilio.defaultCountryCode, as Twilio would apply it
	bounded     bool   // SandboxBounded
	keepAll     bool   // SandboxKeepAll
	// ids makes the provider message ids: sbx-<delivery id>-<12 hex
	// digits>, the digits a random 48-bit start (crypto/rand, once per
	// Sandbox) plus a counter. Within a process they never repeat. Across
	// restarts and instances, the start being uniform, two sends of one
	// delivery share an id with probability 2^-48, as with the 48 random
	// bits drawn per message before, which (crypto/rand, hex, Sprintf)
	// cost more than the rest of Send but the encoding.
	ids *sandboxIDs

	mu       sync.Mutex
	ring     []sandboxRow // the last sandboxKeep messages; next is the oldest once full
	next     int
	queue    []*sandboxBatch
	flushing bool
	// docs encodes the flusher's statements (only the flusher, one at a
	// time, uses it): its buffer is kept from one flush to the next
	// rather than grown anew each time.
	docs sandboxDocs
}

// sandboxBatch is one Send's accepted messages on their way to the
// database. Its rows point into the Send's msgs rather than copy them (a
// Message copy per delivery was the largest allocation of the sandbox's
// send, issue 17): Send's callers do not change msgs, and only the ring
// keeps copies.
type sandboxBatch struct {
	rows []sandboxSent
	done chan error
}

type sandboxSent struct {
	msg *Message
	id  string
}

type sandboxRow struct {
	msg Message
	id  string
}

// SandboxOption configures a Sandbox.
type SandboxOption func(*Sandbox)

// SandboxBounded makes the sandbox report that it does not reconcile
// exactly (dispatch.boundSandbox), though it still answers Accepted from
// its records: the workers then hold its sends to dispatch.recordBatch as
// they hold a real provider's, so the sandbox drains at the rate such a
// provider would allow, and the fault suite can check the in-doubt bound.
func SandboxBounded() SandboxOption {
	return func(s *Sandbox) { s.bounded = true }
}

// SandboxKeepAll makes Messages keep every message, a delivery's too, even
// with a database: for tests that read what the workers sent from memory.
// The service does not set it (a delivery's record is its row).
func SandboxKeepAll() SandboxOption {
	return func(s *Sandbox) { s.keepAll = true }
}

// SandboxCountryCode makes the sandbox accept national phone numbers as
// Twilio does with channels.twilio.defaultCountryCode set to cc.
func SandboxCountryCode(cc string) SandboxOption {
	return func(s *Sandbox) { s.countryCode = cc }
}

// NewSandbox returns a Sandbox. db may be nil: then it records in memory
// (the last 1000 messages, Messages) and in the debug log only.
func NewSandbox(db *gorm.DB, log *slog.Logger, now func() time.Time, opts ...SandboxOption) *Sandbox {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sandbox{log: log, now: now, ids: newSandboxIDs()}
	if db != nil {
		s.records = NewSandboxRecords(db)
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name is the provider name.
func (s *Sandbox) Name() string { return SandboxName }

// Send refuses, permanently, each message whose address the real provider
// would refuse (see check), and records and accepts the others, each with a
// fresh provider message id. It fails (retryably) only when the record
// cannot be written.
func (s *Sandbox) Send(ctx context.Context, msgs []Message) []Result {
	out := make([]Result, len(msgs))
	if err := ctx.Err(); err != nil {
		// As a provider's client would: an attempt whose context has ended
		// sends (records) nothing and fails retryably with ctx's error.
		// Recording it anyway showed a message as sent that a real provider
		// never got.
		e := transportError(SandboxName, err)
		for i := range out {
			out[i].Err = e
		}
		return out
	}
	b := &sandboxBatch{rows: make([]sandboxSent, 0, len(msgs)), done: make(chan error, 1)}
	idx := make([]int, 0, len(msgs)) // the message of each row
	for i := range msgs {
		m := &msgs[i]
		if err := s.check(*m); err != nil {
			out[i] = Result{Err: err}
			continue
		}
		b.rows = append(b.rows, sandboxSent{msg: m, id: s.ids.next(m.DeliveryID)})
		idx = append(idx, i)
	}
	var err error
	if s.records != nil && len(b.rows) > 0 {
		err = s.commit(ctx, b)
	}
	for j, r := range b.rows {
		i := idx[j]
		switch {
		case errors.Is(err, errMaybeRecorded):
			out[i] = Result{Err: MaybeAccepted(SandboxName, err.Error(), err)}
			continue
		case err != nil:
			out[i] = Result{Err: Retryable(SandboxName, "record: "+err.Error(), 0, err)}
			continue
		}
		out[i] = Result{ProviderMessageID: r.id}
		// LogAttrs, not DebugContext's ...any: that boxed the id and the
		// strings for every delivery before finding debug off, 2% of the
		// service's CPU in the REST send (issue 17).
		s.log.LogAttrs(ctx, slog.LevelDebug, "sandbox send", slog.Int64("deliveryId", r.msg.DeliveryID),
			slog.String("channel", r.msg.Channel), slog.String("providerMessageId", r.id))
	}
	if err == nil {
		s.mu.Lock()
		for _, r := range b.rows {
			if s.records != nil && r.msg.DeliveryID != 0 && !s.keepAll {
				// Its sandbox_messages row is the record: a copy here
				// kept 1000 rendered messages live for nothing but
				// Messages, about 4 MiB of RSS under load (issue 17).
				continue
			}
			if len(s.ring) < sandboxKeep {
				s.ring = append(s.ring, sandboxRow{msg: *r.msg, id: r.id})
				continue
			}
			s.ring[s.next] = sandboxRow{msg: *r.msg, id: r.id}
			s.next = (s.next + 1) % sandboxKeep
		}
		s.mu.Unlock()
	}
	return out
}

// check refuses m's address as the provider of its channel would, with the
// same permanent error (under the sandbox's name), so a delivery that would
// fail in production fails here too instead of showing as sent: email
// addresses as SendGrid checks them, phone numbers as E.164 after the
// normalisation Twilio's channel applies (with channels.twilio.
// defaultCountryCode), device tokens as FCM's channel checks them. What
// needs an account (a configured sender, a template id) is not checked.
func (s *Sandbox) check(m Message) error {
	switch m.Channel {
	case ChannelEmail:
		return emailAddressError(SandboxName, m, m.From)
	case ChannelSMS:
		if _, err := NormalizePhone(m.Phone, s.countryCode); err != nil {
			return Permanent(SandboxName, err.Error(), err)
		}
	case ChannelPush:
		return pushTokenError(SandboxName, m.PushToken)
	}
	return nil
}

// commit queues b and waits until a flush has written it, or until ctx
// ends. The first caller to find no flush running starts the flusher,
// which writes everything queued until the queue is empty; the flusher
// runs on its own goroutine, so its starter, like every other caller,
// stops waiting when its ctx ends (Channel: Send honours ctx).
func (s *Sandbox) commit(ctx context.Context, b *sandboxBatch) error {
	s.mu.Lock()
	s.queue = append(s.queue, b)
	lead := !s.flushing
	if lead {
		s.flushing = true
	}
	s.mu.Unlock()
	if lead {
		// Not ctx: the flush holds other callers' messages too.
		go s.flush(context.WithoutCancel(ctx))
	}
	select {
	case err := <-b.done:
		return err
	case <-ctx.Done():
		// The flush goes on and may still write the row, as a provider may
		// accept a message after its caller stopped waiting.
		return fmt.Errorf("sandbox: record: %w: %w", errMaybeRecorded, ctx.Err())
	}
}

// flush writes the queued batches until the queue is empty.
func (s *Sandbox) flush(ctx context.Context) {
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		if len(batch) == 0 {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		err := s.insert(ctx, batch)
		for _, q := range batch {
			q.done <- err
		}
	}
}

// insert writes the rows of batch through s.records, with one created time.
func (s *Sandbox) insert(ctx context.Context, batch []*sandboxBatch) error {
	now := s.now().UnixMilli()
	rows := 0
	for _, b := range batch {
		rows += len(b.rows)
	}
	docs := &s.docs
	docs.reset(s.records.pg, rows)
	for _, b := range batch {
		for i := range b.rows {
			// A message of no delivery (a test-send) is kept in memory
			// only: no delivery's retention would ever prune its row.
			if b.rows[i].msg.DeliveryID == 0 {
				continue
			}
			if err := docs.add(&b.rows[i], now); err != nil {
				return err
			}
		}
	}
	return s.records.insert(ctx, docs.close())
}

// Accepted returns, for those of deliveries the sandbox has recorded, the
// provider message id it gave them (channels.Reconciler): after a crash,
// the dispatcher asks before sending a delivery again. Without a database it
// only knows the messages it keeps in memory.
func (s *Sandbox) Accepted(ctx context.Context, deliveries []InDoubt) (map[int64]string, error) {
	deliveryIDs := make([]int64, len(deliveries))
	for i, d := range deliveries {
		deliveryIDs[i] = d.DeliveryID
	}
	if s.records != nil {
		return s.records.accepted(ctx, deliveryIDs)
	}
	out := map[int64]string{}
	want := map[int64]bool{}
	for _, id := range deliveryIDs {
		want[id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.ring {
		if want[r.msg.DeliveryID] {
			out[r.msg.DeliveryID] = r.id
		}
	}
	return out, nil
}

// ReconcilesExactly reports whether Accepted is exact after a crash
// (channels.ExactReconciler): with a database, Send returns a message as
// accepted only once its sandbox_messages row is committed, and fails it
// as in doubt when the commit's answer was lost, so the rows are exactly
// what it accepted. In memory only, a crash forgets them.
func (s *Sandbox) ReconcilesExactly() bool { return s.records != nil && !s.bounded }

// Messages returns the last messages Send accepted that are not in
// sandbox_messages (at most 1000), oldest first: without a database every
// message, with one only the test sends (a delivery's are read with
// SandboxRecords.Messages, or the status API) unless SandboxKeepAll.
func (s *Sandbox) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, len(s.ring))
	for i := range s.ring {
		out = append(out, s.ring[(s.next+i)%len(s.ring)].msg)
	}
	return out
}

// sandboxIDs makes provider message ids (Sandbox.ids).
type sandboxIDs struct {
	start uint64
	n     atomic.Uint64
}

func newSandboxIDs() *sandboxIDs {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &sandboxIDs{start: binary.LittleEndian.Uint64(b[:])}
}

// next returns a fresh id for a message of delivery deliveryID.
func (g *sandboxIDs) next(deliveryID int64) string {
	v := (g.start + g.n.Add(1)) & (1<<48 - 1)
	b := make([]byte, 0, 36)
	b = append(b, "sbx-"...)
	b = strconv.AppendInt(b, deliveryID, 10)
	b = append(b, '-')
	const digits = "0123456789abcdef"
	for shift := 44; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return string(b)
}

// SandboxRecords is sandbox_messages, the sandbox's record of every message
// it accepted, and the only code that touches that table: the Sandbox
// writes it and asks it what it accepted; dispatch shows a delivery's
// records in its status and deletes them with the delivery (retention)
// through an interface of its own, which the app wires to this.
type SandboxRecords struct {
	db *gorm.DB
	pg bool
}

// NewSandboxRecords returns the records in db. The table is there whether
// or not dispatch.recordSandbox is on, so rows written while it was on are
// still shown and pruned.
func NewSandboxRecords(db *gorm.DB) *SandboxRecords {
	return &SandboxRecords{db: db, pg: store.IsPostgres(db)}
}

// SandboxMessage is one message the sandbox accepted for a delivery: the
// rendered Message as it recorded it.
type SandboxMessage struct {
	ProviderMessageID string          `json:"providerMessageId"`
	Message           json.RawMessage `json:"message"`
	CreatedTime       int64           `json:"createdTime"`
}

// sandboxChunk bounds the ids of one statement, under every dialect's limit
// on bound parameters.
const sandboxChunk = 1000

// Messages returns what the sandbox recorded for each of deliveryIDs, in
// the order it recorded them; a delivery it never sent has no entry.
func (r *SandboxRecords) Messages(ctx context.Context, deliveryIDs []int64) (map[int64][]SandboxMessage, error) {
	out := map[int64][]SandboxMessage{}
	for ids := range slices.Chunk(deliveryIDs, sandboxChunk) {
		var rows []struct {
			DeliveryID        int64
			ProviderMessageID string
			Message           string
			CreatedTime       int64
		}
		if err := r.db.WithContext(ctx).Table("sandbox_messages").Select("delivery_id, provider_message_id, message, created_time").
			Where("delivery_id IN ?", ids).Order("id").Find(&rows).Error; err != nil {
			return nil, fmt.Errorf("sandbox: messages: %w", err)
		}
		for _, m := range rows {
			out[m.DeliveryID] = append(out[m.DeliveryID], SandboxMessage{m.ProviderMessageID, json.RawMessage(m.Message), m.CreatedTime})
		}
	}
	return out, nil
}

// Delete removes the records of deliveryIDs and returns how many it
// removed.
func (r *SandboxRecords) Delete(ctx context.Context, deliveryIDs []int64) (int64, error) {
	var n int64
	for ids := range slices.Chunk(deliveryIDs, sandboxChunk) {
		res := r.db.WithContext(ctx).Exec("DELETE FROM sandbox_messages WHERE delivery_id IN ?", ids)
		if res.Error != nil {
			return n, fmt.Errorf("sandbox: delete: %w", res.Error)
		}
		n += res.RowsAffected
	}
	return n, nil
}

// accepted is Sandbox.Accepted on the table: the provider message id the
// sandbox gave each of deliveryIDs it recorded.
func (r *SandboxRecords) accepted(ctx context.Context, deliveryIDs []int64) (map[int64]string, error) {
	out := map[int64]string{}
	for ids := range slices.Chunk(deliveryIDs, sandboxChunk) {
		var rows []struct {
			DeliveryID        int64
			ProviderMessageID string
		}
		if err := r.db.WithContext(ctx).Raw("SELECT delivery_id, provider_message_id FROM sandbox_messages WHERE delivery_id IN ? ORDER BY id",
			ids).Scan(&rows).Error; err != nil {
			return nil, fmt.Errorf("sandbox: accepted: %w", err)
		}
		for _, m := range rows {
			out[m.DeliveryID] = m.ProviderMessageID
		}
	}
	return out, nil
}

// sandboxColumns are the sandbox_messages columns insert writes.
var sandboxColumns = store.Columns("delivery_id bigint", "notification_id bigint", "channel text",
	"provider_message_id text", "message text", "created_time bigint")

// sandboxDocs encodes the arguments of insert's statements, one statement
// per sandboxChunk rows, each row's message encoded once, straight into
// them. Encoding each message alone and then the rows with json.Marshal
// encoded every message twice (the second time validating and compacting
// it as a json.RawMessage): 10% of the drain's CPU (issue 17). The message
// column holds exactly what json.Marshal makes of the Message, as before.
//
// On PostgreSQL a statement's arguments are one array per column
// (store.UnnestRows): the messages go as text, which PostgreSQL stores
// without parsing, where json_to_recordset parsed each message to find
// where it ended. Elsewhere they are one JSON array of rows
// (store.JSONRows).
type sandboxDocs struct {
	pg   bool
	done [][]any
	buf  bytes.Buffer
	enc  *json.Encoder
	rows int
	// On PostgreSQL, the columns of the rows since the last flush; the
	// messages are buf's bytes, the i-th ending at ends[i].
	ids, notes, created store.Int64s
	channels, pmids     store.Texts
	ends                []int
	size                int // the rows a flush's columns are made for
}

// add appends r, recorded at now.
func (d *sandboxDocs) add(r *sandboxSent, now int64) error {
	if d.enc == nil {
		d.enc = json.NewEncoder(&d.buf)
	}
	if d.rows == sandboxChunk {
		d.flush()
	}
	if d.pg {
		if d.rows == 0 {
			d.ids, d.notes, d.created = make(store.Int64s, 0, d.size), make(store.Int64s, 0, d.size), make(store.Int64s, 0, d.size)
			d.channels, d.pmids, d.ends = make(store.Texts, 0, d.size), make(store.Texts, 0, d.size), d.ends[:0]
		}
		d.rows++
		d.ids, d.notes, d.created = append(d.ids, r.msg.DeliveryID), append(d.notes, r.msg.NotificationID), append(d.created, now)
		d.channels, d.pmids = append(d.channels, r.msg.Channel), append(d.pmids, r.id)
		if err := d.enc.Encode(r.msg); err != nil { // a pointer: no copy of the Message
			return err
		}
		d.buf.Truncate(d.buf.Len() - 1) // Encode's newline
		d.ends = append(d.ends, d.buf.Len())
		return nil
	}
	sep := byte(',')
	if d.rows == 0 {
		sep = '['
	}
	d.rows++
	b := append(d.buf.AvailableBuffer(), sep)
	b = append(b, `{"delivery_id":`...)
	b = strconv.AppendInt(b, r.msg.DeliveryID, 10)
	b = append(b, `,"notification_id":`...)
	b = strconv.AppendInt(b, r.msg.NotificationID, 10)
	b = append(b, `,"created_time":`...)
	b = strconv.AppendInt(b, now, 10)
	d.buf.Write(b)
	if err := d.field("channel", r.msg.Channel); err != nil {
		return err
	}
	if err := d.field("provider_message_id", r.id); err != nil {
		return err
	}
	if err := d.field("message", r.msg); err != nil {
		return err
	}
	d.buf.WriteByte('}')
	return nil
}

// field appends ,"name":v. The Encoder writes what json.Marshal returns
// plus a newline, which is dropped: the same text, with no copy of its own.
func (d *sandboxDocs) field(name string, v any) error {
	d.buf.WriteString(`,"`)
	d.buf.WriteString(name)
	d.buf.WriteString(`":`)
	if err := d.enc.Encode(v); err != nil {
		return err
	}
	d.buf.Truncate(d.buf.Len() - 1)
	return nil
}

func (d *sandboxDocs) flush() {
	if d.pg {
		// One string holds the chunk's messages; each row's is a slice of it.
		all, msgs, start := d.buf.String(), make(store.Texts, len(d.ends)), 0
		for i, end := range d.ends {
			msgs[i], start = all[start:end], end
		}
		// The order of sandboxColumns.
		d.done = append(d.done, []any{d.ids, d.notes, d.channels, d.pmids, msgs, d.created})
	} else {
		d.buf.WriteByte(']')
		d.done = append(d.done, []any{d.buf.String()})
	}
	d.buf.Reset()
	d.rows = 0
}

// reset empties d for the next statements, keeping its buffer; rows is how
// many they will hold, at most.
func (d *sandboxDocs) reset(pg bool, rows int) {
	d.pg, d.size = pg, min(rows, sandboxChunk)
	d.done, d.rows = d.done[:0], 0
	d.buf.Reset()
}

// close returns the statements' arguments, one statement per sandboxChunk
// rows.
func (d *sandboxDocs) close() [][]any {
	if d.rows > 0 {
		d.flush()
	}
	return d.done
}

// insert runs stmts (sandboxDocs: each the arguments of one statement of at
// most sandboxChunk rows), whose rows are one parameter per column
// (store.UnnestRows) or one JSON parameter (store.JSONRows): the same
// statement text for every size, where a VALUES list was a new statement,
// prepared and planned anew, for each count of rows.
//
// More than one statement run in one transaction: all the rows are recorded
// or none, as the callers that share the flush are all told the same. An
// error after which the rows may be recorded all the same
// (store.MaybeCommitted: the connection broke mid-commit) wraps
// errMaybeRecorded.
func (r *SandboxRecords) insert(ctx context.Context, stmts [][]any) error {
	sel, from := store.BatchRows(r.pg, sandboxColumns)
	q := "INSERT INTO sandbox_messages (" + store.ColumnList(sandboxColumns) + ") SELECT " + sel + " FROM " + from
	write := func(tx *gorm.DB) error {
		for _, args := range stmts {
			if err := tx.Exec(q, args...).Error; err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if len(stmts) == 1 {
		err = write(r.db.WithContext(ctx))
	} else if len(stmts) > 1 {
		err = r.db.WithContext(ctx).Transaction(write)
	}
	switch {
	case err == nil:
		return nil
	case store.MaybeCommitted(err):
		return fmt.Errorf("sandbox: record: %w: %w", errMaybeRecorded, err)
	}
	return fmt.Errorf("sandbox: record: %w", err)
}

// errMaybeRecorded marks a record whose outcome is unknown: the rows may be
// in sandbox_messages, as a real provider may have accepted a message whose
// answer was lost. Send reports such messages as channels.MaybeAccepted,
// so they are not sent again before recovery has asked (Accepted).
var errMaybeRecorded = errors.New("the messages may have been recorded")
