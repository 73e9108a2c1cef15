/* safetensors reader (mmap, every header entry checked before use), sets of
 * shards, and a writer matching the Python package byte for byte. */
#include "io/safetensors.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"

/* ---------------------------------------------------------------------- */
/* dtypes                                                                   */

/* `rank` is the position in the Rust crate's Dtype enum: files list tensors
 * by descending rank (wider elements first), then by name. */
typedef struct st_dtype_info {
  const char *name;
  ftq_dtype dtype;
  size_t size;
  int rank;
} st_dtype_info;

static const st_dtype_info st_dtypes[] = {
    {"BOOL", FTQ_DTYPE_BOOL, 1, 0},       {"U8", FTQ_DTYPE_U8, 1, 1},       {"I8", FTQ_DTYPE_I8, 1, 2},
    {"F8_E5M2", FTQ_DTYPE_COUNT, 1, 3},   {"F8_E4M3", FTQ_DTYPE_COUNT, 1, 4}, {"F8_E8M0", FTQ_DTYPE_COUNT, 1, 5},
    {"I16", FTQ_DTYPE_I16, 2, 6},         {"U16", FTQ_DTYPE_U16, 2, 7},     {"F16", FTQ_DTYPE_F16, 2, 8},
    {"BF16", FTQ_DTYPE_BF16, 2, 9},       {"I32", FTQ_DTYPE_I32, 4, 10},    {"U32", FTQ_DTYPE_U32, 4, 11},
    {"F32", FTQ_DTYPE_F32, 4, 12},        {"F64", FTQ_DTYPE_F64, 8, 13},    {"I64", FTQ_DTYPE_I64, 8, 14},
    {"U64", FTQ_DTYPE_U64, 8, 15},
};
#define N_ST_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

static const st_dtype_info *dtype_by_name(const char *s) {
  for (size_t i = 0; i < N_ST_DTYPES; i++)
    if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
  return NULL;
}

static const st_dtype_info *dtype_info(ftq_dtype d) {
  for (size_t i = 0; i < N_ST_DTYPES; i++)
    if (st_dtypes[i].dtype == d && d != FTQ_DTYPE_COUNT) return &st_dtypes[i];
  return NULL;
}

const char *ftq_st_dtype_name(ftq_dtype dtype) {
  const st_dtype_info *i = dtype_info(dtype);
  return i ? i->name : NULL;
}

/* ---------------------------------------------------------------------- */
/* One file                                                                 */

struct ftq_safetensors {
  ftq_mapped_file map; /* empty when parsed from caller's memory */
  char *what;
  ftq_st_tensor *tensors; /* by data offset */
  size_t n;
  size_t *by_name;
  char **meta_keys, **meta_vals;
  size_t n_meta;
};

static int cmp_offset(const void *a, const void *b) {
  const ftq_st_tensor *x = a, *y = b;
  if (x->file_offset != y->file_offset) return x->file_offset < y->file_offset ? -1 : 1;
  if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
  return 0;
}

static int cmp_name_idx(const void *a, const void *b, void *base) {
  const ftq_st_tensor *t = base;
  return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

void ftq_safetensors_close(ftq_safetensors *f) {
  if (!f) return;
  for (size_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
  for (size_t i = 0; i < f->n_meta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_vals[i]);
  }
  free(f->meta_keys);
  free(f->meta_vals);
  free(f->tensors);
  free(f->by_name);
  free(f->what);
  ftq_file_unmap(&f->map);
  free(f);
}

static ftq_status parse_metadata(ftq_safetensors *f, json_t *meta) {
  if (!json_is_object(meta)) return ftq_error(FTQ_ERR_FORMAT, "%s: __metadata__ must be an object of strings", f->what);
  size_t n = json_object_size(meta);
  f->meta_keys = ftq_calloc(n ? n : 1, sizeof *f->meta_keys, "safetensors metadata");
  f->meta_vals = ftq_calloc(n ? n : 1, sizeof *f->meta_vals, "safetensors metadata");
  if (!f->meta_keys || !f->meta_vals) return FTQ_ERR_OUT_OF_MEMORY;
  const char *key;
  json_t *val;
  json_object_foreach(meta, key, val) {
    if (!json_is_string(val))
      return ftq_error(FTQ_ERR_FORMAT, "%s: __metadata__ value of '%.200s' must be a string", f->what, key);
    f->meta_keys[f->n_meta] = ftq_strdup(key, "safetensors metadata");
    f->meta_vals[f->n_meta] = ftq_strdup(json_string_value(val), "safetensors metadata");
    f->n_meta++;
    if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1]) return FTQ_ERR_OUT_OF_MEMORY;
  }
  return FTQ_OK;
}

/* Checks one header entry and fills `t` (offsets relative to the data section). */
static ftq_status parse_entry(const ftq_safetensors *f, const char *name, json_t *e, uint64_t data_start,
                              uint64_t data_len, ftq_st_tensor *t) {
  const char *what = f->what;
  if (!*name) return ftq_error(FTQ_ERR_FORMAT, "%s: a tensor has an empty name", what);
  if (!json_is_object(e)) return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': entry must be an object", what, name);
  json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"), *jo = json_object_get(e, "data_offsets");
  if (!json_is_string(jd)) return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': dtype missing or not a string", what, name);
  const st_dtype_info *di = dtype_by_name(json_string_value(jd));
  if (!di)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tensor '%.200s': unknown dtype \"%.32s\"", what, name, json_string_value(jd));
  if (!json_is_array(js)) return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': shape missing or not an array", what, name);
  if (json_array_size(js) > FTQ_ST_MAX_DIMS)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tensor '%.200s': %zu dimensions (at most %d supported)", what, name,
                     json_array_size(js), FTQ_ST_MAX_DIMS);
  if (!json_is_array(jo) || json_array_size(jo) != 2)
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': data_offsets must be an array [begin, end]", what, name);
  uint64_t begin, end;
  if (!ftq_json_as_u64(json_array_get(jo, 0), &begin) || !ftq_json_as_u64(json_array_get(jo, 1), &end))
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': data_offsets must be non-negative integers", what, name);
  if (end < begin)
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': data_offsets [%llu, %llu] end before begin", what, name,
                     (unsigned long long)begin, (unsigned long long)end);
  memset(t, 0, sizeof *t);
  t->dtype_name = di->name;
  t->dtype = di->dtype;
  t->elem_size = di->size;
  t->ndim = (int)json_array_size(js);
  size_t numel = 1;
  for (int d = 0; d < t->ndim; d++) {
    uint64_t v;
    if (!ftq_json_as_u64(json_array_get(js, (size_t)d), &v) || v > (uint64_t)INT64_MAX)
      return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': shape[%d] must be a non-negative integer", what, name, d);
    t->shape[d] = (int64_t)v;
    if (!ftq_mul_size(numel, (size_t)v, &numel))
      return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': shape overflows", what, name);
  }
  size_t bytes;
  if (!ftq_mul_size(numel, di->size, &bytes))
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': shape overflows", what, name);
  if (end - begin != bytes)
    return ftq_error(FTQ_ERR_FORMAT,
                     "%s: tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes but %s of this shape needs %zu",
                     what, name, (unsigned long long)begin, (unsigned long long)end,
                     (unsigned long long)(end - begin), di->name, bytes);
  if (end > data_len)
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': data_offsets [%llu, %llu] out of range (data section is %llu bytes)",
                     what, name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_len);
  if ((data_start + begin) % di->size)
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s': data at file offset %llu is not aligned to its %zu-byte %s elements",
                     what, name, (unsigned long long)(data_start + begin), di->size, di->name);
  t->numel = numel;
  t->bytes = bytes;
  t->file_offset = data_start + begin;
  return FTQ_OK;
}

static ftq_status parse_image(ftq_safetensors *f, const uint8_t *base, size_t size) {
  const char *what = f->what;
  if (size < 8) return ftq_error(FTQ_ERR_FORMAT, "%s: file too small (%zu bytes) for the 8-byte header length", what, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i];
  if (hlen > FTQ_ST_MAX_HEADER)
    return ftq_error(FTQ_ERR_FORMAT, "%s: header too large (%llu bytes; at most %llu allowed)", what,
                     (unsigned long long)hlen, (unsigned long long)FTQ_ST_MAX_HEADER);
  if (hlen > size - 8)
    return ftq_error(FTQ_ERR_FORMAT, "%s: header length %llu exceeds the file (%zu bytes)", what, (unsigned long long)hlen,
                     size);
  if (hlen < 2 || base[8] != '{') return ftq_error(FTQ_ERR_FORMAT, "%s: header is not a JSON object", what);
  json_t *root;
  FTQ_TRY(ftq_json_parse((const char *)base + 8, (size_t)hlen, what, &root));
  ftq_status st = FTQ_OK;
  if (!json_is_object(root)) {
    st = ftq_error(FTQ_ERR_FORMAT, "%s: header is not a JSON object", what);
    goto done;
  }
  uint64_t data_start = 8 + hlen, data_len = size - data_start;
  size_t cap = json_object_size(root);
  f->tensors = ftq_calloc(cap ? cap : 1, sizeof *f->tensors, "safetensors tensors");
  if (!f->tensors) {
    st = FTQ_ERR_OUT_OF_MEMORY;
    goto done;
  }
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if ((st = parse_metadata(f, val)) != FTQ_OK) goto done;
      continue;
    }
    ftq_st_tensor *t = &f->tensors[f->n];
    if ((st = parse_entry(f, key, val, data_start, data_len, t)) != FTQ_OK) goto done;
    t->name = ftq_strdup(key, "tensor name");
    if (!t->name) {
      st = FTQ_ERR_OUT_OF_MEMORY;
      goto done;
    }
    f->n++;
  }
  /* the data section must be covered exactly: no overlaps, gaps or tail */
  qsort(f->tensors, f->n, sizeof *f->tensors, cmp_offset);
  uint64_t expect = data_start;
  for (size_t i = 0; i < f->n; i++) {
    ftq_st_tensor *t = &f->tensors[i];
    if (t->file_offset < expect) {
      st = ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s' (data %llu..%llu) overlaps the tensor before it (ending at %llu)",
                     what, t->name, (unsigned long long)(t->file_offset - data_start),
                     (unsigned long long)(t->file_offset - data_start + t->bytes), (unsigned long long)(expect - data_start));
      goto done;
    }
    if (t->file_offset > expect) {
      st = ftq_error(FTQ_ERR_FORMAT, "%s: gap of %llu unused bytes before tensor '%.200s' (data offset %llu)", what,
                     (unsigned long long)(t->file_offset - expect), t->name, (unsigned long long)(t->file_offset - data_start));
      goto done;
    }
    expect += t->bytes;
    t->data = base + t->file_offset;
    t->file = f;
  }
  if (expect != size) {
    st = ftq_error(FTQ_ERR_FORMAT, "%s: %llu bytes after the last tensor's data are not described by the header", what,
                   (unsigned long long)(size - expect));
    goto done;
  }
  f->by_name = ftq_malloc((f->n ? f->n : 1) * sizeof *f->by_name, "safetensors index");
  if (!f->by_name) {
    st = FTQ_ERR_OUT_OF_MEMORY;
    goto done;
  }
  for (size_t i = 0; i < f->n; i++) f->by_name[i] = i;
  qsort_r(f->by_name, f->n, sizeof *f->by_name, cmp_name_idx, f->tensors);
done:
  json_decref(root);
  return st;
}

ftq_status ftq_safetensors_parse(const void *data, size_t size, const char *what, ftq_safetensors **out) {
  *out = NULL;
  ftq_safetensors *f = ftq_calloc(1, sizeof *f, "safetensors file");
  if (!f) return FTQ_ERR_OUT_OF_MEMORY;
  f->what = ftq_strdup(what ? what : "safetensors", "safetensors name");
  if (!f->what) {
    free(f);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  ftq_status st = parse_image(f, data, size);
  if (st != FTQ_OK) {
    ftq_safetensors_close(f);
    return st;
  }
  *out = f;
  return FTQ_OK;
}

ftq_status ftq_safetensors_open(const char *path, ftq_safetensors **out) {
  *out = NULL;
  ftq_mapped_file map;
  FTQ_TRY(ftq_file_map(path, &map));
  ftq_safetensors *f;
  ftq_status st = ftq_safetensors_parse(map.data, map.size, path, &f);
  if (st != FTQ_OK) {
    ftq_file_unmap(&map);
    return st;
  }
  f->map = map;
  *out = f;
  return FTQ_OK;
}

const char *ftq_safetensors_path(const ftq_safetensors *f) { return f->what; }
size_t ftq_safetensors_count(const ftq_safetensors *f) { return f->n; }
const ftq_st_tensor *ftq_safetensors_tensor(const ftq_safetensors *f, size_t i) {
  return i < f->n ? &f->tensors[i] : NULL;
}

const ftq_st_tensor *ftq_safetensors_find(const ftq_safetensors *f, const char *name) {
  size_t lo = 0, hi = f->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->tensors[f->by_name[mid]].name, name);
    if (c == 0) return &f->tensors[f->by_name[mid]];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

const char *ftq_safetensors_metadata(const ftq_safetensors *f, const char *key) {
  for (size_t i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
  return NULL;
}

void ftq_st_tensor_release(const ftq_st_tensor *t) {
  if (t && t->file) ftq_file_release_range(&t->file->map, t->data, t->bytes);
}

/* ---------------------------------------------------------------------- */
/* Sets of shards                                                           */

struct ftq_st_set {
  ftq_safetensors **files;
  size_t n_files;
  const ftq_st_tensor **sorted;
  size_t n;
};

void ftq_st_set_close(ftq_st_set *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n_files; i++) ftq_safetensors_close(s->files[i]);
  free(s->files);
  free(s->sorted);
  free(s);
}

size_t ftq_st_set_count(const ftq_st_set *s) { return s->n; }
const ftq_st_tensor *ftq_st_set_tensor(const ftq_st_set *s, size_t i) { return i < s->n ? s->sorted[i] : NULL; }
size_t ftq_st_set_file_count(const ftq_st_set *s) { return s->n_files; }
const ftq_safetensors *ftq_st_set_file(const ftq_st_set *s, size_t i) { return i < s->n_files ? s->files[i] : NULL; }

const ftq_st_tensor *ftq_st_set_find(const ftq_st_set *s, const char *name) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->sorted[mid]->name, name);
    if (c == 0) return s->sorted[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

static int cmp_tensor_ptr_name(const void *a, const void *b) {
  return strcmp((*(const ftq_st_tensor *const *)a)->name, (*(const ftq_st_tensor *const *)b)->name);
}

static ftq_status set_add_file(ftq_st_set *s, const char *path) {
  ftq_safetensors **nf = ftq_realloc(s->files, (s->n_files + 1) * sizeof *nf, "safetensors shards");
  if (!nf) return FTQ_ERR_OUT_OF_MEMORY;
  s->files = nf;
  FTQ_TRY(ftq_safetensors_open(path, &s->files[s->n_files]));
  s->n_files++;
  return FTQ_OK;
}

/* Builds the name index over every shard; a name in two shards is an error. */
static ftq_status set_index(ftq_st_set *s, const char *what) {
  size_t n = 0;
  for (size_t i = 0; i < s->n_files; i++) n += s->files[i]->n;
  s->sorted = ftq_malloc((n ? n : 1) * sizeof *s->sorted, "safetensors index");
  if (!s->sorted) return FTQ_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < s->n_files; i++)
    for (size_t j = 0; j < s->files[i]->n; j++) s->sorted[s->n++] = &s->files[i]->tensors[j];
  qsort(s->sorted, s->n, sizeof *s->sorted, cmp_tensor_ptr_name);
  for (size_t i = 1; i < s->n; i++)
    if (strcmp(s->sorted[i - 1]->name, s->sorted[i]->name) == 0)
      return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%.200s' appears in both '%s' and '%s'", what, s->sorted[i]->name,
                       s->sorted[i - 1]->file->what, s->sorted[i]->file->what);
  return FTQ_OK;
}

static int shard_name_ok(const char *f) {
  return *f && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

static ftq_status open_index(ftq_st_set *s, const char *index_path) {
  json_t *root;
  FTQ_TRY(ftq_json_load_file(index_path, (size_t)64 << 20, &root));
  ftq_status st = FTQ_OK;
  char *dir = NULL;
  json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
  if (!json_is_object(wm)) {
    st = ftq_error(FTQ_ERR_FORMAT, "%s: missing \"weight_map\" object", index_path);
    goto done;
  }
  const char *slash = strrchr(index_path, '/');
  dir = slash ? strndup(index_path, (size_t)(slash - index_path) + 1) : strdup("./");
  if (!dir) {
    st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory");
    goto done;
  }
  /* open each distinct shard once, in order of first mention */
  const char *key;
  json_t *val;
  json_object_foreach(wm, key, val) {
    if (!json_is_string(val) || !shard_name_ok(json_string_value(val))) {
      st = ftq_error(FTQ_ERR_FORMAT, "%s: weight_map entry '%.200s' must name a file in the same folder", index_path, key);
      goto done;
    }
    const char *fname = json_string_value(val);
    int seen = 0;
    for (size_t i = 0; i < s->n_files && !seen; i++) {
      const char *p = strrchr(s->files[i]->what, '/');
      seen = strcmp(p ? p + 1 : s->files[i]->what, fname) == 0;
    }
    if (seen) continue;
    char *path = ftq_path_join(dir, fname);
    if (!path) {
      st = FTQ_ERR_OUT_OF_MEMORY;
      goto done;
    }
    st = set_add_file(s, path);
    free(path);
    if (st != FTQ_OK) {
      st = ftq_error_context(st, "%s", index_path);
      goto done;
    }
  }
  if ((st = set_index(s, index_path)) != FTQ_OK) goto done;
  /* every weight_map entry must be where the index says */
  json_object_foreach(wm, key, val) {
    const ftq_st_tensor *t = ftq_st_set_find(s, key);
    const char *fname = json_string_value(val);
    const char *p = t ? strrchr(t->file->what, '/') : NULL;
    if (!t || strcmp(p ? p + 1 : t->file->what, fname) != 0) {
      st = ftq_error(FTQ_ERR_FORMAT, "%s: weight_map puts tensor '%.200s' in '%s', which does not contain it", index_path,
                     key, fname);
      goto done;
    }
  }
done:
  free(dir);
  json_decref(root);
  return st;
}

/* In a folder without an index: model.safetensors, else the only
 * *.safetensors file. */
static ftq_status find_single(const char *dir, char **out) {
  *out = ftq_path_join(dir, "model.safetensors");
  if (!*out) return FTQ_ERR_OUT_OF_MEMORY;
  if (ftq_file_exists(*out)) return FTQ_OK;
  free(*out);
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) return ftq_error(FTQ_ERR_IO, "cannot read folder '%s'", dir);
  struct dirent *e;
  int count = 0;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len > 12 && strcmp(e->d_name + len - 12, ".safetensors") == 0 && e->d_name[0] != '.') {
      if (++count == 1) *out = ftq_path_join(dir, e->d_name);
    }
  }
  closedir(d);
  if (count != 1) {
    free(*out);
    *out = NULL;
    if (count == 0) return ftq_error(FTQ_ERR_NOT_FOUND, "folder '%s' holds no .safetensors file", dir);
    return ftq_error(FTQ_ERR_FORMAT, "folder '%s' holds %d .safetensors files but no model.safetensors.index.json", dir,
                     count);
  }
  return *out ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
}

ftq_status ftq_st_set_open(const char *path, ftq_st_set **out) {
  *out = NULL;
  if (!path) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors path must not be NULL");
  ftq_st_set *s = ftq_calloc(1, sizeof *s, "safetensors set");
  if (!s) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st;
  size_t len = strlen(path);
  if (ftq_dir_exists(path)) {
    char *index = ftq_path_join(path, "model.safetensors.index.json");
    if (!index) st = FTQ_ERR_OUT_OF_MEMORY;
    else if (ftq_file_exists(index)) st = open_index(s, index);
    else {
      char *single;
      st = find_single(path, &single);
      if (st == FTQ_OK) {
        st = set_add_file(s, single);
        if (st == FTQ_OK) st = set_index(s, single);
        free(single);
      }
    }
    free(index);
  } else if (len > 5 && strcmp(path + len - 5, ".json") == 0) {
    st = open_index(s, path);
  } else {
    st = set_add_file(s, path);
    if (st == FTQ_OK) st = set_index(s, path);
  }
  if (st != FTQ_OK) {
    ftq_st_set_close(s);
    return st;
  }
  *out = s;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* Writer                                                                   */

typedef struct st_wentry {
  char *name;
  const st_dtype_info *dt;
  int ndim;
  int64_t shape[FTQ_ST_MAX_DIMS];
  uint64_t bytes;
  const void *data;
  ftq_st_fill_fn fill;
  void *user;
} st_wentry;

struct ftq_st_writer {
  st_wentry *e;
  size_t n, cap;
  char **mk, **mv;
  size_t nm;
};

ftq_status ftq_st_writer_create(ftq_st_writer **out) {
  *out = ftq_calloc(1, sizeof **out, "safetensors writer");
  if (!*out) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = ftq_st_writer_set_metadata(*out, "format", "pt");
  if (st != FTQ_OK) {
    ftq_st_writer_destroy(*out);
    *out = NULL;
  }
  return st;
}

void ftq_st_writer_destroy(ftq_st_writer *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n; i++) free(w->e[i].name);
  for (size_t i = 0; i < w->nm; i++) {
    free(w->mk[i]);
    free(w->mv[i]);
  }
  free(w->mk);
  free(w->mv);
  free(w->e);
  free(w);
}

size_t ftq_st_writer_count(const ftq_st_writer *w) { return w->n; }

ftq_status ftq_st_writer_set_metadata(ftq_st_writer *w, const char *key, const char *value) {
  if (!w || !key) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors metadata: key must not be NULL");
  for (size_t i = 0; i < w->nm; i++) {
    if (strcmp(w->mk[i], key) != 0) continue;
    if (!value) {
      free(w->mk[i]);
      free(w->mv[i]);
      w->mk[i] = w->mk[w->nm - 1];
      w->mv[i] = w->mv[w->nm - 1];
      w->nm--;
      return FTQ_OK;
    }
    char *v = ftq_strdup(value, "safetensors metadata");
    if (!v) return FTQ_ERR_OUT_OF_MEMORY;
    free(w->mv[i]);
    w->mv[i] = v;
    return FTQ_OK;
  }
  if (!value) return FTQ_OK;
  char **k = ftq_realloc(w->mk, (w->nm + 1) * sizeof *k, "safetensors metadata");
  if (!k) return FTQ_ERR_OUT_OF_MEMORY;
  w->mk = k;
  char **v = ftq_realloc(w->mv, (w->nm + 1) * sizeof *v, "safetensors metadata");
  if (!v) return FTQ_ERR_OUT_OF_MEMORY;
  w->mv = v;
  w->mk[w->nm] = ftq_strdup(key, "safetensors metadata");
  w->mv[w->nm] = ftq_strdup(value, "safetensors metadata");
  if (!w->mk[w->nm] || !w->mv[w->nm]) {
    free(w->mk[w->nm]);
    free(w->mv[w->nm]);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  w->nm++;
  return FTQ_OK;
}

static ftq_status writer_add(ftq_st_writer *w, const char *name, ftq_dtype dtype, int ndim, const int64_t *shape,
                             const void *data, ftq_st_fill_fn fill, void *user) {
  if (!w || !name || !*name) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor name must not be empty");
  const st_dtype_info *di = dtype_info(dtype);
  if (!di) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': dtype %d has no safetensors name", name, (int)dtype);
  if (ndim < 0 || ndim > FTQ_ST_MAX_DIMS || (ndim > 0 && !shape))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': %d dimensions (0..%d allowed)", name, ndim,
                     FTQ_ST_MAX_DIMS);
  if (!data && !fill) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': no data", name);
  if (strcmp(name, "__metadata__") == 0)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: '__metadata__' is reserved");
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->e[i].name, name) == 0)
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s' added twice", name);
  size_t bytes = di->size;
  for (int d = 0; d < ndim; d++)
    if (shape[d] < 0 || !ftq_mul_size(bytes, (size_t)shape[d], &bytes))
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': invalid shape", name);
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    st_wentry *e = ftq_realloc(w->e, cap * sizeof *e, "safetensors writer");
    if (!e) return FTQ_ERR_OUT_OF_MEMORY;
    w->e = e;
    w->cap = cap;
  }
  st_wentry *e = &w->e[w->n];
  memset(e, 0, sizeof *e);
  e->name = ftq_strdup(name, "tensor name");
  if (!e->name) return FTQ_ERR_OUT_OF_MEMORY;
  e->dt = di;
  e->ndim = ndim;
  for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
  e->bytes = bytes;
  e->data = data;
  e->fill = fill;
  e->user = user;
  w->n++;
  return FTQ_OK;
}

ftq_status ftq_st_writer_add(ftq_st_writer *w, const char *name, ftq_dtype dtype, int ndim, const int64_t *shape,
                             const void *data) {
  if (!data && w) {
    /* a zero-byte tensor may come without a buffer */
    static const char empty[1];
    size_t bytes = ftq_dtype_size(dtype);
    for (int d = 0; d < ndim && shape; d++) bytes *= (size_t)(shape[d] > 0 ? shape[d] : 0);
    if (bytes == 0) data = empty;
  }
  return writer_add(w, name, dtype, ndim, shape, data, NULL, NULL);
}

ftq_status ftq_st_writer_add_fn(ftq_st_writer *w, const char *name, ftq_dtype dtype, int ndim, const int64_t *shape,
                                ftq_st_fill_fn fill, void *user) {
  if (!fill) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': fill function is NULL", name ? name : "?");
  return writer_add(w, name, dtype, ndim, shape, NULL, fill, user);
}

/* A growing text buffer for the header. */
typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_u64(sbuf *b, uint64_t v) {
  char t[24];
  snprintf(t, sizeof t, "%llu", (unsigned long long)v);
  sb_str(b, t);
}
/* A JSON string escaped the way serde_json escapes it. */
static void sb_json_string(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    switch (*p) {
      case '"': sb_put(b, "\\\"", 2); break;
      case '\\': sb_put(b, "\\\\", 2); break;
      case '\b': sb_put(b, "\\b", 2); break;
      case '\f': sb_put(b, "\\f", 2); break;
      case '\n': sb_put(b, "\\n", 2); break;
      case '\r': sb_put(b, "\\r", 2); break;
      case '\t': sb_put(b, "\\t", 2); break;
      default:
        if (*p < 0x20) {
          snprintf(esc, sizeof esc, "\\u%04x", *p);
          sb_str(b, esc);
        } else {
          sb_put(b, (const char *)p, 1);
        }
    }
  }
  sb_put(b, "\"", 1);
}

static int cmp_write_order(const void *a, const void *b, void *base) {
  const st_wentry *e = base;
  const st_wentry *x = &e[*(const size_t *)a], *y = &e[*(const size_t *)b];
  if (x->dt->rank != y->dt->rank) return x->dt->rank > y->dt->rank ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Writes the tensors idx[0..n) (indices into w->e) as one file. */
static ftq_status write_file(const ftq_st_writer *w, const size_t *idx_in, size_t n, const char *path) {
  size_t *idx = ftq_malloc((n ? n : 1) * sizeof *idx, "safetensors writer");
  if (!idx) return FTQ_ERR_OUT_OF_MEMORY;
  memcpy(idx, idx_in, n * sizeof *idx);
  qsort_r(idx, n, sizeof *idx, cmp_write_order, w->e);

  sbuf h = {0};
  sb_put(&h, "{", 1);
  int first = 1;
  if (w->nm) {
    /* metadata keys sorted, so output never depends on insertion order */
    char **keys = ftq_malloc(w->nm * sizeof *keys, "safetensors metadata");
    if (!keys) {
      free(idx);
      free(h.p);
      return FTQ_ERR_OUT_OF_MEMORY;
    }
    memcpy(keys, w->mk, w->nm * sizeof *keys);
    qsort(keys, w->nm, sizeof *keys, cmp_cstr);
    sb_str(&h, "\"__metadata__\":{");
    for (size_t k = 0; k < w->nm; k++) {
      size_t j = 0;
      while (w->mk[j] != keys[k]) j++;
      if (k) sb_put(&h, ",", 1);
      sb_json_string(&h, w->mk[j]);
      sb_put(&h, ":", 1);
      sb_json_string(&h, w->mv[j]);
    }
    sb_put(&h, "}", 1);
    first = 0;
    free(keys);
  }
  uint64_t off = 0;
  size_t max_fill = 0;
  for (size_t k = 0; k < n; k++) {
    const st_wentry *e = &w->e[idx[k]];
    if (!first) sb_put(&h, ",", 1);
    first = 0;
    sb_json_string(&h, e->name);
    sb_str(&h, ":{\"dtype\":\"");
    sb_str(&h, e->dt->name);
    sb_str(&h, "\",\"shape\":[");
    for (int d = 0; d < e->ndim; d++) {
      if (d) sb_put(&h, ",", 1);
      sb_u64(&h, (uint64_t)e->shape[d]);
    }
    sb_str(&h, "],\"data_offsets\":[");
    sb_u64(&h, off);
    sb_put(&h, ",", 1);
    sb_u64(&h, off + e->bytes);
    sb_str(&h, "]}");
    off += e->bytes;
    if (e->fill && e->bytes > max_fill) max_fill = (size_t)e->bytes;
  }
  sb_put(&h, "}", 1);
  while (!h.oom && h.len % 8) sb_put(&h, " ", 1);
  if (h.oom) {
    free(h.p);
    free(idx);
    return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory building the safetensors header for '%s'", path);
  }

  void *scratch = NULL;
  if (max_fill) {
    scratch = ftq_malloc(max_fill, "safetensors writer buffer");
    if (!scratch) {
      free(h.p);
      free(idx);
      return FTQ_ERR_OUT_OF_MEMORY;
    }
  }
  ftq_atomic_file af;
  ftq_status st = ftq_atomic_open(path, &af);
  if (st == FTQ_OK) {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    st = ftq_atomic_write(&af, len8, 8);
    if (st == FTQ_OK) st = ftq_atomic_write(&af, h.p, h.len);
    for (size_t k = 0; k < n && st == FTQ_OK; k++) {
      const st_wentry *e = &w->e[idx[k]];
      if (e->fill) {
        st = e->fill(e->user, e->name, scratch, (size_t)e->bytes);
        if (st != FTQ_OK) st = ftq_error_context(st, "writing '%s': tensor '%s'", path, e->name);
        else st = ftq_atomic_write(&af, scratch, (size_t)e->bytes);
      } else {
        st = ftq_atomic_write(&af, e->data, (size_t)e->bytes);
      }
    }
    if (st == FTQ_OK) st = ftq_atomic_commit(&af);
    else ftq_atomic_abort(&af);
  }
  free(scratch);
  free(h.p);
  free(idx);
  return st;
}

ftq_status ftq_st_writer_write(const ftq_st_writer *w, const char *path) {
  if (!w || !path) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: NULL argument");
  size_t *idx = ftq_malloc((w->n ? w->n : 1) * sizeof *idx, "safetensors writer");
  if (!idx) return FTQ_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < w->n; i++) idx[i] = i;
  ftq_status st = write_file(w, idx, w->n, path);
  free(idx);
  return st;
}

ftq_status ftq_st_writer_write_sharded(const ftq_st_writer *w, const char *dir, const char *prefix,
                                       uint64_t max_shard_bytes, int *n_shards) {
  if (!w || !dir || !prefix || !*prefix || strchr(prefix, '/'))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "safetensors writer: a folder and a file prefix without '/' are required");
  if (!ftq_dir_exists(dir)) return ftq_error(FTQ_ERR_IO, "safetensors writer: folder '%s' does not exist", dir);
  /* assign tensors to shards in insertion order */
  size_t *shard_of = ftq_malloc((w->n ? w->n : 1) * sizeof *shard_of, "safetensors shards");
  size_t *idx = ftq_malloc((w->n ? w->n : 1) * sizeof *idx, "safetensors shards");
  if (!shard_of || !idx) {
    free(shard_of);
    free(idx);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  size_t shards = 0;
  uint64_t cur = 0, total = 0;
  for (size_t i = 0; i < w->n; i++) {
    if (shards == 0 || (cur > 0 && cur + w->e[i].bytes > max_shard_bytes)) {
      shards++;
      cur = 0;
    }
    cur += w->e[i].bytes;
    total += w->e[i].bytes;
    shard_of[i] = shards - 1;
  }
  if (shards == 0) shards = 1;
  ftq_status st = FTQ_OK;
  char name[512];
  char **names = ftq_calloc(shards, sizeof *names, "safetensors shard names");
  if (!names) st = FTQ_ERR_OUT_OF_MEMORY;
  for (size_t s = 0; s < shards && st == FTQ_OK; s++) {
    if (shards == 1) snprintf(name, sizeof name, "%s.safetensors", prefix);
    else snprintf(name, sizeof name, "%s-%05zu-of-%05zu.safetensors", prefix, s + 1, shards);
    names[s] = ftq_strdup(name, "shard name");
    char *path = names[s] ? ftq_path_join(dir, name) : NULL;
    if (!path) {
      st = FTQ_ERR_OUT_OF_MEMORY;
      break;
    }
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++)
      if (shard_of[i] == s) idx[n++] = i;
    st = write_file(w, idx, n, path);
    free(path);
  }
  if (st == FTQ_OK && shards > 1) {
    /* the index, as transformers writes it (json.dumps(indent=2, sort_keys=True)) */
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    for (size_t i = 0; i < w->n; i++) json_object_set_new(wm, w->e[i].name, json_string(names[shard_of[i]]));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", wm);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    snprintf(name, sizeof name, "%s.safetensors.index.json", prefix);
    char *path = ftq_path_join(dir, name);
    if (!text || !path) {
      st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory writing the shard index");
    } else {
      ftq_atomic_file af;
      st = ftq_atomic_open(path, &af);
      if (st == FTQ_OK) {
        st = ftq_atomic_write(&af, text, strlen(text));
        if (st == FTQ_OK) st = ftq_atomic_write(&af, "\n", 1);
        if (st == FTQ_OK) st = ftq_atomic_commit(&af);
        else ftq_atomic_abort(&af);
      }
    }
    free(text);
    free(path);
  }
  if (names)
    for (size_t s = 0; s < shards; s++) free(names[s]);
  free(names);
  free(shard_of);
  free(idx);
  if (st == FTQ_OK && n_shards) *n_shards = (int)shards;
  return st;
}
