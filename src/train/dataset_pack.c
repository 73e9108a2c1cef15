/* Packing, as TRL's pack_dataset does it:
 * - "bfd": best-fit decreasing. Sequences (cut to max_len) are taken
 *   longest first (ties in their original order); each goes into the open
 *   bin with the least room that still fits it (among bins with equal room,
 *   the one that reached that room first), or opens a new bin. Bins keep
 *   their creation order and their sequences their insertion order.
 * - "bfd_split": the same, with sequences longer than max_len split into
 *   max_len pieces (the remainder last) instead of cut.
 * - "wrapped": everything concatenated and cut every max_len tokens. Unlike
 *   TRL, a sequence keeps its boundaries (and one cut in two continues as a
 *   new sequence), so attention never crosses documents.
 * As in TRL (datasets' batched map), rows are packed in blocks of 1000
 * (FTQ_PACK_BLOCK): no packed sequence mixes rows of two blocks.
 * Finding the best-fitting room uses a segment tree over room sizes. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "train/dataset.h"

typedef struct piece {
  int64_t ex, off; /* source example and offset within it */
  int32_t len;
  int64_t order;   /* position among pieces, for the stable sort */
} piece;

static int piece_desc(const void *pa, const void *pb) {
  const piece *a = pa, *b = pb;
  if (a->len != b->len) return a->len > b->len ? -1 : 1;
  return a->order < b->order ? -1 : a->order > b->order;
}

/* Presence of a room size 1..size-1 in a bit tree; query: smallest room >= v. */
typedef struct rooms {
  int64_t size; /* leaves: room values 0 .. size-1 (power of two) */
  uint8_t *t;   /* 2*size nodes: 1 if any leaf below is present */
} rooms;

static void rooms_set(rooms *r, int64_t v, int on) {
  int64_t i = v + r->size;
  r->t[i] = (uint8_t)on;
  for (i /= 2; i >= 1; i /= 2) r->t[i] = r->t[2 * i] | r->t[2 * i + 1];
}

/* smallest present leaf >= v, or -1 */
static int64_t rooms_find(const rooms *r, int64_t v) {
  if (v >= r->size) return -1;
  int64_t i = v + r->size;
  if (r->t[i]) return v;
  /* climb until a right sibling subtree holds a leaf */
  while (i > 1) {
    if ((i & 1) == 0 && r->t[i + 1]) {
      i = i + 1;
      while (i < r->size) i = r->t[2 * i] ? 2 * i : 2 * i + 1;
      return i - r->size;
    }
    i /= 2;
  }
  return -1;
}

typedef struct bin {
  int64_t first, last; /* linked list of pieces (indices into the sorted array) */
  int64_t len;
  int64_t next_same;   /* FIFO of bins with the same room */
} bin;

static ftq_status emit_packed(const ftq_examples *in, const piece *p, const int64_t *next, const bin *bins,
                              int64_t n_bins, int64_t max_len, ftq_examples *out) {
  int32_t *ids = ftq_malloc((size_t)max_len * sizeof *ids, "packing");
  uint8_t *mask = ftq_malloc((size_t)max_len, "packing");
  int32_t *segs = ftq_malloc((size_t)max_len * sizeof *segs, "packing");
  ftq_status st = (ids && mask && segs) ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  for (int64_t b = 0; b < n_bins && st == FTQ_OK; b++) {
    int64_t len = 0, ns = 0, line = -1;
    for (int64_t k = bins[b].first; k >= 0; k = next[k]) {
      const piece *q = &p[k];
      memcpy(ids + len, in->ids + in->start[q->ex] + q->off, (size_t)q->len * sizeof *ids);
      memcpy(mask + len, in->mask + in->start[q->ex] + q->off, (size_t)q->len);
      len += q->len;
      segs[ns++] = q->len;
      if (line < 0) line = in->line[q->ex];
    }
    st = ftq_examples_append(out, ids, mask, len, segs, ns, line);
  }
  free(ids);
  free(mask);
  free(segs);
  return st;
}

static ftq_status pack_bfd(const ftq_examples *in, int64_t lo, int64_t hi, int64_t max_len, int split,
                           ftq_examples *out) {
  /* pieces: whole sequences (cut) or max_len fragments */
  int64_t n_pieces = 0;
  for (int64_t i = lo; i < hi; i++) {
    int64_t len = ftq_example_len(in, i);
    if (len > 0) n_pieces += split ? (len + max_len - 1) / max_len : 1;
  }
  piece *p = ftq_malloc((size_t)(n_pieces ? n_pieces : 1) * sizeof *p, "packing");
  int64_t *next = ftq_malloc((size_t)(n_pieces ? n_pieces : 1) * sizeof *next, "packing");
  bin *bins = ftq_malloc((size_t)(n_pieces ? n_pieces : 1) * sizeof *bins, "packing");
  rooms r = {1, NULL};
  while (r.size <= max_len) r.size *= 2;
  r.t = ftq_calloc((size_t)(2 * r.size), 1, "packing");
  int64_t *head = ftq_malloc((size_t)(max_len + 1) * sizeof *head, "packing");
  int64_t *tail = ftq_malloc((size_t)(max_len + 1) * sizeof *tail, "packing");
  ftq_status st = (p && next && bins && r.t && head && tail) ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  int64_t k = 0, n_bins = 0;
  for (int64_t i = lo; i < hi && st == FTQ_OK; i++) {
    int64_t len = ftq_example_len(in, i);
    if (len == 0) continue;
    if (!split) {
      p[k] = (piece){i, 0, (int32_t)(len < max_len ? len : max_len), k};
      k++;
    } else {
      for (int64_t off = 0; off < len; off += max_len, k++)
        p[k] = (piece){i, off, (int32_t)(len - off < max_len ? len - off : max_len), k};
    }
  }
  if (st == FTQ_OK) {
    qsort(p, (size_t)n_pieces, sizeof *p, piece_desc);
    for (int64_t v = 0; v <= max_len; v++) head[v] = tail[v] = -1;
    for (int64_t i = 0; i < n_pieces; i++) {
      int64_t len = p[i].len, room = rooms_find(&r, len), b;
      if (room >= 0) { /* the oldest bin with exactly this room */
        b = head[room];
        head[room] = bins[b].next_same;
        if (head[room] < 0) {
          tail[room] = -1;
          rooms_set(&r, room, 0);
        }
        next[bins[b].last] = i;
        bins[b].last = i;
      } else {
        b = n_bins++;
        bins[b] = (bin){i, i, 0, -1};
        room = max_len;
      }
      next[i] = -1;
      bins[b].len += len;
      int64_t left = room - len;
      if (left > 0) {
        bins[b].next_same = -1;
        if (tail[left] >= 0) bins[tail[left]].next_same = b;
        else head[left] = b;
        tail[left] = b;
        rooms_set(&r, left, 1);
      }
    }
    st = emit_packed(in, p, next, bins, n_bins, max_len, out);
  }
  free(p);
  free(next);
  free(bins);
  free(r.t);
  free(head);
  free(tail);
  return st;
}

static ftq_status pack_wrapped(const ftq_examples *in, int64_t lo, int64_t hi, int64_t max_len, ftq_examples *out) {
  int32_t *ids = ftq_malloc((size_t)max_len * sizeof *ids, "packing");
  uint8_t *mask = ftq_malloc((size_t)max_len, "packing");
  int32_t *segs = ftq_malloc((size_t)max_len * sizeof *segs, "packing");
  ftq_status st = (ids && mask && segs) ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  int64_t fill = 0, ns = 0, line = -1;
  for (int64_t i = lo; i < hi && st == FTQ_OK; i++) {
    int64_t len = ftq_example_len(in, i), off = 0;
    while (off < len && st == FTQ_OK) {
      int64_t take = len - off < max_len - fill ? len - off : max_len - fill;
      memcpy(ids + fill, in->ids + in->start[i] + off, (size_t)take * sizeof *ids);
      memcpy(mask + fill, in->mask + in->start[i] + off, (size_t)take);
      if (line < 0) line = in->line[i];
      segs[ns++] = (int32_t)take;
      fill += take;
      off += take;
      if (fill == max_len) {
        st = ftq_examples_append(out, ids, mask, fill, segs, ns, line);
        fill = ns = 0;
        line = -1;
      }
    }
  }
  if (st == FTQ_OK && fill > 0) st = ftq_examples_append(out, ids, mask, fill, segs, ns, line);
  free(ids);
  free(mask);
  free(segs);
  return st;
}

ftq_status ftq_pack(const ftq_examples *in, int64_t max_len, ftq_pack_strategy strategy, ftq_examples *out) {
  if (max_len <= 0) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "packing needs max_seq_length > 0");
  for (int64_t lo = 0; lo < in->n; lo += FTQ_PACK_BLOCK) {
    int64_t hi = in->n - lo < FTQ_PACK_BLOCK ? in->n : lo + FTQ_PACK_BLOCK;
    if (strategy == FTQ_PACK_WRAPPED) FTQ_TRY(pack_wrapped(in, lo, hi, max_len, out));
    else FTQ_TRY(pack_bfd(in, lo, hi, max_len, strategy == FTQ_PACK_BFD_SPLIT, out));
  }
  return FTQ_OK;
}
