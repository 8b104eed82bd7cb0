package fsm

// Constructors and accessors of the split kinds. Their ops reuse Op's
// numeric fields (the entry encoding has no others, and replicas and
// snapshots on disk must stay readable), so callers build and read them
// only through these: nothing outside this file sets Delta to mean a
// factor or Min to mean a value.
//
//	OpSplitBegin  factor in Delta, slots in Max (with HasMax)
//	OpSplitEnd    factor in Delta
//	OpImportKey   the add's delta in Delta, its first result's value in Min (with HasMin),
//	              and the key either in Key or, hashed, in Actor (hashedKeyLen bytes)

// SplitBegin returns the op that begins raising the split factor of the
// counter name to factor (2..MaxSplit), with idempotency keys hashed over
// slots (the shard count, factor..MaxSplit).
func SplitBegin(name string, factor, slots int) Op {
	return Op{Kind: OpSplitBegin, Name: name, Delta: int64(factor), Max: int64(slots), HasMax: true}
}

// SplitEnd returns the op that makes factor the split factor of the
// counter name, once the keys its begin moved have been imported.
func SplitEnd(name string, factor int) Op {
	return Op{Kind: OpSplitEnd, Name: name, Delta: int64(factor)}
}

// ImportKey returns the op that remembers key as applied to the
// sub-counter sub (a placement.SubName with an index >= 1) by an add of
// delta whose first result had value.
func ImportKey(sub, key string, delta, value int64) Op {
	return Op{Kind: OpImportKey, Name: sub, Delta: delta, Key: key, Min: value, HasMin: true}
}

// ImportKeyHash is ImportKey of the key whose hash the dedup table holds:
// the table keeps hashes, not keys, so this is the form MovedKeys returns.
// The hash rides in Actor, which OpImportKey has no other use for.
func ImportKeyHash(sub string, kh keyHash, delta, value int64) Op {
	return Op{Kind: OpImportKey, Name: sub, Delta: delta, Actor: kh.String(), Min: value, HasMin: true}
}

// importedKey is the hash of an OpImportKey's key, in either form.
func (op *Op) importedKey() keyHash {
	if op.Key != "" {
		return hashKey(op.Key)
	}
	return parseKeyHash(op.Actor)
}

// SplitFactor is the factor of an OpSplitBegin or OpSplitEnd.
func (op *Op) SplitFactor() int64 { return op.Delta }

// SplitSlots is the shard count keys are hashed over of an OpSplitBegin.
func (op *Op) SplitSlots() int64 { return op.Max }

// ImportedValue is the value the first result of an OpImportKey's add had.
func (op *Op) ImportedValue() int64 { return op.Min }
