package meta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrMalformedCommand is returned by Decode for bytes that are not a
// command's envelope.
var ErrMalformedCommand = errors.New("meta: malformed command")

// Encode returns the envelope of cmd, the encoding a replicated log
// carries: one JSON object whose "op" member names the operation, beside
// the command's own fields, for instance
//
//	{"op":"link-blob","repo":"library/alpine","digest":"sha256:...","size":3}
//
// The encoding is stable: a field, once written to a log, keeps its name
// and meaning.
func Encode(cmd Command) ([]byte, error) {
	fields, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("meta: encode %s: %w", cmd.Op(), err)
	}
	op, err := json.Marshal(cmd.Op())
	if err != nil {
		return nil, fmt.Errorf("meta: encode %s: %w", cmd.Op(), err)
	}
	// Every command is a struct, so fields is an object: splice "op" in
	// as its first member.
	var b bytes.Buffer
	b.Grow(len(fields) + len(op) + 7)
	b.WriteString(`{"op":`)
	b.Write(op)
	if rest := fields[1:]; len(rest) > 1 {
		b.WriteByte(',')
		b.Write(rest)
	} else {
		b.WriteByte('}')
	}
	return b.Bytes(), nil
}

// Decode returns the command whose envelope is b. It fails with an error
// wrapping ErrUnknownCommand for an op this version does not know (a newer
// node's command in a mixed-version group), and with one wrapping
// ErrMalformedCommand for anything else that is not an envelope. Members
// that the op's command does not have are ignored.
func Decode(b []byte) (Command, error) {
	var head struct {
		Op *Op `json:"op"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedCommand, err)
	}
	if head.Op == nil {
		return nil, fmt.Errorf("%w: no op", ErrMalformedCommand)
	}
	decode := decoderOf(*head.Op)
	if decode == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownCommand, *head.Op)
	}
	cmd, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformedCommand, *head.Op, err)
	}
	return cmd, nil
}

// decoderOf returns the decoder of op's command, or nil for an op this
// version does not know.
func decoderOf(op Op) func([]byte) (Command, error) {
	switch op {
	case OpLinkBlob:
		return decodeAs[LinkBlob]
	case OpUnlinkBlob:
		return decodeAs[UnlinkBlob]
	case OpPutManifest:
		return decodeAs[PutManifest]
	case OpDeleteManifest:
		return decodeAs[DeleteManifest]
	case OpDeleteTag:
		return decodeAs[DeleteTag]
	case OpMergeTag:
		return decodeAs[MergeTag]
	case OpMarkBlobs:
		return decodeAs[MarkBlobs]
	case OpCollectBlobs:
		return decodeAs[CollectBlobs]
	case OpAckOutbox:
		return decodeAs[AckOutbox]
	case OpReplicatedBatch:
		return decodeAs[ReplicatedBatch]
	case OpTransferBegin:
		return decodeAs[TransferBegin]
	case OpTransferSegment:
		return decodeAs[TransferSegment]
	case OpTransferEnd:
		return decodeAs[TransferEnd]
	case OpForgetDeadSegments:
		return decodeAs[ForgetDeadSegments]
	case OpPutWebhook:
		return decodeAs[PutWebhook]
	case OpPutScopeMap:
		return decodeAs[PutScopeMap]
	case OpDeleteScopeMap:
		return decodeAs[DeleteScopeMap]
	case OpPutToken:
		return decodeAs[PutToken]
	case OpDeleteToken:
		return decodeAs[DeleteToken]
	case OpPutAccessConfig:
		return decodeAs[PutAccessConfig]
	case OpDeleteWebhook:
		return decodeAs[DeleteWebhook]
	case OpWebhookDelivered:
		return decodeAs[WebhookDelivered]
	case OpPutReplication:
		return decodeAs[PutReplication]
	case OpDeleteReplication:
		return decodeAs[DeleteReplication]
	case OpPutConnectedRegistry:
		return decodeAs[PutConnectedRegistry]
	case OpDeleteConnectedRegistry:
		return decodeAs[DeleteConnectedRegistry]
	case OpSetConnectedActivation:
		return decodeAs[SetConnectedActivation]
	case OpSetConnectedStatus:
		return decodeAs[SetConnectedStatus]
	case OpPutSite:
		return decodeAs[PutSite]
	default:
		return nil
	}
}

func decodeAs[C Command](b []byte) (Command, error) {
	var cmd C
	if err := json.Unmarshal(b, &cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}
