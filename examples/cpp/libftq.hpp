// libftq.hpp: a header-only C++17 RAII wrapper of libftq's C API.
//
// Every handle is a move-only class that destroys its C object in its
// destructor; every failed call throws ftq::Error carrying the status and
// ftq_last_error()'s text; options are set by name with typed values.
// Callbacks are std::function; an exception thrown inside one stops the
// work where the C API allows it and is rethrown by the call that ran the
// callback (it never crosses the C library).
//
// Objects made on a context (or model, adapter, data set) must be destroyed
// before it: declare them after it in the same scope, and C++ destroys them
// in the right order.
#ifndef LIBFTQ_HPP
#define LIBFTQ_HPP

#include <libftq/ftq.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ftq {

/// A failed libftq call: the status and what failed, as ftq_last_error() says.
class Error : public std::runtime_error {
 public:
  Error(ftq_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
  /// The ::ftq_status of the failure.
  ftq_status status() const noexcept { return status_; }

 private:
  ftq_status status_;
};

namespace detail {

// An exception thrown by a callback during the current C call (callbacks run
// on the calling thread).
inline std::exception_ptr &pending() {
  thread_local std::exception_ptr p;
  return p;
}

inline void keep_current_exception() {
  if (!pending()) pending() = std::current_exception();
}

inline void check(ftq_status s) {
  if (s != FTQ_OK) throw Error(s, ftq_last_error());
}

// Runs a C call that may run callbacks: rethrows a callback's exception
// first, else throws for a failed status.
template <class F>
ftq_status guarded(F &&f) {
  pending() = nullptr;
  ftq_status s = f();
  if (std::exception_ptr e = std::exchange(pending(), nullptr)) std::rethrow_exception(e);
  return s;
}

template <class F>
void call(F &&f) {
  check(guarded(std::forward<F>(f)));
}

// Owns a C handle and destroys it with its destroy function.
template <class T, void (*Destroy)(T *)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(T *p) : p_(p) {}
  Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Handle &operator=(Handle &&o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  ~Handle() { reset(); }
  void reset() { Destroy(std::exchange(p_, nullptr)); }
  T *get() const noexcept { return p_; }

 private:
  T *p_ = nullptr;
};

// Creates a C object through `f(&out)` into @p h. If a callback threw during
// the call, the new object is destroyed again and the exception rethrown.
template <class T, void (*Destroy)(T *), class F>
void create(Handle<T, Destroy> &h, F &&f) {
  T *p = nullptr;
  pending() = nullptr;
  ftq_status s = f(&p);
  if (s == FTQ_OK) h = Handle<T, Destroy>(p);
  if (std::exception_ptr e = std::exchange(pending(), nullptr)) {
    h.reset();
    std::rethrow_exception(e);
  }
  check(s);
}

inline std::string take(char *text, size_t len) {
  std::string s(text ? text : "", text ? len : 0);
  ftq_free(text);
  return s;
}

inline std::string take(char *text) {
  std::string s(text ? text : "");
  ftq_free(text);
  return s;
}

}  // namespace detail

/// Option values by name (ftq_options.h).
class Options {
 public:
  Options() { detail::create(h_, [](ftq_options **o) { return ftq_options_create(o); }); }
  /// A set from a JSON object text.
  static Options from_json(const std::string &json) {
    Options o;
    detail::check(ftq_options_load_json(o.get(), json.c_str()));
    return o;
  }
  /// An independent copy.
  Options copy() const {
    Options o(nullptr);
    detail::create(o.h_, [&](ftq_options **out) { return ftq_options_copy(get(), out); });
    return o;
  }
  Options &set(const char *name, int64_t v) { return check(ftq_options_set_int(get(), name, v)); }
  Options &set(const char *name, int v) { return set(name, static_cast<int64_t>(v)); }
  Options &set(const char *name, double v) { return check(ftq_options_set_float(get(), name, v)); }
  Options &set(const char *name, bool v) { return check(ftq_options_set_bool(get(), name, v ? 1 : 0)); }
  /// Text is stored for string options and parsed for the others.
  Options &set(const char *name, const std::string &v) { return set(name, v.c_str()); }
  Options &set(const char *name, const char *v) {
    size_t i;
    detail::check(ftq_option_find(name, &i));
    return check(ftq_option_type_of(i) == FTQ_OPTION_STRING ? ftq_options_set_string(get(), name, v)
                                                             : ftq_options_set_parse(get(), name, v));
  }
  Options &unset(const char *name) { return check(ftq_options_unset(get(), name)); }
  bool is_set(const char *name) const {
    int v = 0;
    detail::check(ftq_options_is_set(get(), name, &v));
    return v != 0;
  }
  int64_t get_int(const char *name) const {
    int64_t v = 0;
    detail::check(ftq_options_get_int(get(), name, &v));
    return v;
  }
  double get_float(const char *name) const {
    double v = 0;
    detail::check(ftq_options_get_float(get(), name, &v));
    return v;
  }
  bool get_bool(const char *name) const {
    int v = 0;
    detail::check(ftq_options_get_bool(get(), name, &v));
    return v != 0;
  }
  std::string get_string(const char *name) const {
    const char *v = nullptr;
    detail::check(ftq_options_get_string(get(), name, &v));
    return v ? v : "";
  }
  /// The set as JSON text.
  std::string to_json(bool include_defaults = false) const {
    char *out = nullptr;
    detail::check(ftq_options_to_json(get(), include_defaults ? 1 : 0, &out));
    return detail::take(out);
  }
  ftq_options *get() const noexcept { return h_.get(); }

 private:
  explicit Options(std::nullptr_t) {}
  Options &check(ftq_status s) {
    detail::check(s);
    return *this;
  }
  detail::Handle<ftq_options, ftq_options_destroy> h_;
};

inline const ftq_options *ptr(const Options *o) { return o ? o->get() : nullptr; }

/// A compute device and its log (ftq_context.h).
class Context {
 public:
  using LogFn = std::function<void(ftq_log_level, std::string_view)>;

  explicit Context(const char *device = "cpu", const Options *opts = nullptr) {
    detail::create(h_, [&](ftq_context **c) { return ftq_context_create(device, ptr(opts), c); });
  }
  /// Installs the log receiver (an empty function removes it).
  void set_log_callback(LogFn fn) {
    auto holder = fn ? std::make_unique<LogFn>(std::move(fn)) : nullptr;
    detail::check(ftq_context_set_log_callback(get(), holder ? &Context::tramp : nullptr, holder.get()));
    log_ = std::move(holder);
  }
  void set_log_level(ftq_log_level level) { detail::check(ftq_context_set_log_level(get(), level)); }
  std::string device_name() const { return ftq_context_device_name(get()); }
  int num_threads() const { return ftq_context_num_threads(get()); }
  /// Bytes held now in a category (FTQ_MEM_ALL: total).
  size_t memory(ftq_memory_category category = FTQ_MEM_ALL) const {
    size_t cur = 0;
    detail::check(ftq_context_memory(get(), category, &cur, nullptr));
    return cur;
  }
  ftq_context *get() const noexcept { return h_.get(); }

 private:
  static void tramp(void *user, ftq_log_level level, const char *message) {
    try {
      (*static_cast<LogFn *>(user))(level, message);
    } catch (...) {
      detail::keep_current_exception();
    }
  }
  std::unique_ptr<LogFn> log_;  // declared before h_: destroyed after the context
  detail::Handle<ftq_context, ftq_context_destroy> h_;
};

/// A communicator id (ftq_comm.h): made on one process, handed to every rank.
using CommId = std::array<unsigned char, FTQ_COMM_ID_SIZE>;

/// One rank's membership of a data-parallel communicator (ftq_comm.h) on a
/// context. Joining is collective; a failed collective throws ftq::Error
/// with FTQ_ERR_COMM (a peer died, left or aborted), FTQ_ERR_TIMEOUT or
/// FTQ_ERR_NCCL, and the communicator is then unusable. Declare it before
/// the trainer it is attached to, so it outlives it.
class Comm {
 public:
  /// A new id for ranks whose contexts are of type `device`.
  static CommId make_id(ftq_device_type device) {
    CommId id{};
    detail::check(ftq_comm_id_create(device, id.data()));
    return id;
  }
  /// The id as printable text (for an environment variable or a file).
  static std::string id_to_string(const CommId &id) {
    char buf[FTQ_COMM_ID_STRING_SIZE];
    detail::check(ftq_comm_id_to_string(id.data(), buf, sizeof buf));
    return buf;
  }
  /// The id of a text id_to_string() wrote.
  static CommId id_from_string(const std::string &text) {
    CommId id{};
    detail::check(ftq_comm_id_from_string(text.c_str(), id.data()));
    return id;
  }
  /// Joins communicator `id` as `rank` of `world_size` (options: comm_timeout_s).
  Comm(Context &ctx, const CommId &id, int rank, int world_size, const Options *opts = nullptr) {
    detail::create(h_, [&](ftq_comm **c) {
      return ftq_comm_create(ctx.get(), id.data(), rank, world_size, ptr(opts), c);
    });
  }
  /// Joins as launchers describe it in the environment (FTQ_RANK / RANK /
  /// OMPI_COMM_WORLD_RANK / PMI_RANK, FTQ_COMM_ID or FTQ_COMM_ID_FILE); one
  /// rank without them.
  static Comm from_env(Context &ctx, const Options *opts = nullptr) {
    Comm c;
    detail::create(c.h_, [&](ftq_comm **out) { return ftq_comm_create_from_env(ctx.get(), ptr(opts), out); });
    return c;
  }
  int rank() const { return ftq_comm_rank(get()); }
  int size() const { return ftq_comm_size(get()); }
  /// Throws the error that stopped the communicator, if any.
  void check() { detail::check(ftq_comm_check(get())); }
  /// Makes pending and later operations fail here and on the peers (callable from another thread).
  void abort() { detail::check(ftq_comm_abort(get())); }
  void barrier() { detail::check(ftq_comm_barrier(get())); }
  /// Reduces `values` in place over the ranks (the same bits on every rank).
  void allreduce(std::vector<double> &values, ftq_comm_reduce op = FTQ_COMM_SUM) {
    detail::check(ftq_comm_allreduce(get(), values.data(), values.size(), op));
  }
  double allreduce(double value, ftq_comm_reduce op = FTQ_COMM_SUM) {
    detail::check(ftq_comm_allreduce(get(), &value, 1, op));
    return value;
  }
  ftq_comm *get() const noexcept { return h_.get(); }

 private:
  Comm() = default;
  detail::Handle<ftq_comm, ftq_comm_destroy> h_;
};

class Lora;

/// Generated tokens and why generation stopped.
struct Generation {
  std::vector<int32_t> tokens;
  ftq_finish_reason finish_reason = FTQ_FINISH_LENGTH;
};

/// A model on a context (ftq_model.h, ftq_generate.h).
class Model {
 public:
  using TokenFn = std::function<bool(int32_t token, size_t index)>;

  static Model load(Context &ctx, const std::string &path, const Options *opts = nullptr) {
    Model m;
    detail::create(m.h_, [&](ftq_model **out) { return ftq_model_load(ctx.get(), path.c_str(), ptr(opts), out); });
    return m;
  }
  static Model init_random(Context &ctx, const std::string &config_json, uint64_t seed,
                           const Options *opts = nullptr) {
    Model m;
    detail::create(m.h_, [&](ftq_model **out) {
      return ftq_model_init_random(ctx.get(), config_json.c_str(), seed, ptr(opts), out);
    });
    return m;
  }
  int64_t config_int(const char *name) const {
    int64_t v = 0;
    detail::check(ftq_model_config_int(get(), name, &v));
    return v;
  }
  std::string config_string(const char *name) const {
    const char *v = nullptr;
    detail::check(ftq_model_config_string(get(), name, &v));
    return v;
  }
  int64_t parameter_count(ftq_param_kind kind = FTQ_PARAMS_ALL) const {
    int64_t v = 0;
    detail::check(ftq_model_parameter_count(get(), kind, &v));
    return v;
  }
  /// Continues a prompt; @p on_token returning true stops; its exceptions are rethrown here.
  Generation generate(const std::vector<int32_t> &prompt, const Options *opts = nullptr, uint64_t seed = 0,
                      TokenFn on_token = nullptr) const {
    int64_t max_new = 20;
    if (opts) max_new = opts->get_int("max_new_tokens");
    size_t cap = static_cast<size_t>(max_new > 0 ? max_new : 1);
    Generation g;
    g.tokens.resize(cap);
    size_t n = 0;
    int reason = 0;
    detail::call([&] {
      return ftq_model_generate(get(), prompt.data(), prompt.size(), ptr(opts), seed, nullptr, 0,
                                on_token ? &Model::tramp : nullptr, on_token ? &on_token : nullptr,
                                g.tokens.data(), cap, &n, &reason);
    });
    g.tokens.resize(n);
    g.finish_reason = static_cast<ftq_finish_reason>(reason);
    return g;
  }
  /// {out_features, in_features} of a linear projection, by its Hugging Face
  /// name ("model.layers.0.self_attn.q_proj.weight").
  std::array<int64_t, 2> weight_shape(const std::string &name) const;
  /// dequant(W) + scaling * B A of a projection in fp32 row-major (just
  /// dequant(W) with no adapter, or one that leaves the projection alone).
  std::vector<float> merged_weight(const std::string &name, const Lora *lora = nullptr) const;
  /// Writes the model with @p lora merged in (nullptr: the base model) as a
  /// Hugging Face folder (options: torch_dtype, max_shard_size, load_in_4bit
  /// and the bnb_4bit_* options to quantize the merged weights again).
  void save_merged(const std::string &dir, const Lora *lora = nullptr, const Options *opts = nullptr);
  ftq_model *get() const noexcept { return h_.get(); }

 private:
  Model() = default;
  static int tramp(void *user, int32_t token, size_t index) {
    try {
      return (*static_cast<TokenFn *>(user))(token, index) ? 1 : 0;
    } catch (...) {
      detail::keep_current_exception();
      return 1;
    }
  }
  detail::Handle<ftq_model, ftq_model_destroy> h_;
};

/// A LoRA adapter on a model (ftq_lora.h); load() reads and save() writes
/// PEFT adapter folders.
class Lora {
 public:
  Lora(Model &model, const Options *opts = nullptr, uint64_t seed = 0, const char *name = nullptr) {
    detail::create(h_, [&](ftq_lora **out) { return ftq_lora_create(model.get(), name, ptr(opts), seed, out); });
  }
  /// Loads a PEFT adapter folder (adapter_config.json +
  /// adapter_model.safetensors) onto @p model as a new, inactive adapter;
  /// @p opts gives what the file does not (e.g. qat).
  static Lora load(Model &model, const std::string &dir, const Options *opts = nullptr, const char *name = nullptr) {
    Lora l;
    detail::create(l.h_, [&](ftq_lora **out) { return ftq_lora_load(model.get(), dir.c_str(), name, ptr(opts), out); });
    return l;
  }
  /// Writes the adapter as a PEFT folder that PeftModel.from_pretrained()
  /// loads (option: base_model_name_or_path).
  void save(const std::string &dir, const Options *opts = nullptr) const {
    detail::call([&] { return ftq_lora_save(get(), dir.c_str(), ptr(opts)); });
  }
  std::string name() const { return ftq_lora_name(get()); }
  double scaling() const {
    double v = 0;
    detail::check(ftq_lora_scaling(get(), &v));
    return v;
  }
  void set_active(bool active) { detail::check(ftq_lora_set_active(get(), active ? 1 : 0)); }
  bool is_active() const { return ftq_lora_is_active(get()) != 0; }
  int64_t num_parameters() const {
    int64_t v = 0;
    detail::check(ftq_lora_num_parameters(get(), &v));
    return v;
  }
  size_t tensor_count() const { return ftq_lora_tensor_count(get()); }
  std::string tensor_name(size_t index) const {
    char name[256];
    detail::check(ftq_lora_tensor_info(get(), index, name, sizeof name, nullptr));
    return name;
  }
  /// Index of the tensor with this PEFT name (the adapter name may be left out).
  size_t find_tensor(const std::string &name) const {
    size_t i = 0;
    detail::check(ftq_lora_find_tensor(get(), name.c_str(), &i));
    return i;
  }
  /// {rows, cols} of tensor @p index.
  std::array<int64_t, 2> tensor_shape(size_t index) const {
    std::array<int64_t, 2> shape{};
    detail::check(ftq_lora_tensor_info(get(), index, nullptr, 0, shape.data()));
    return shape;
  }
  std::vector<float> get_tensor(size_t index) const {
    auto shape = tensor_shape(index);
    std::vector<float> v(static_cast<size_t>(shape[0] * shape[1]));
    detail::check(ftq_lora_get_tensor(get(), index, v.data(), v.size()));
    return v;
  }
  void set_tensor(size_t index, const std::vector<float> &values) {
    detail::check(ftq_lora_set_tensor(get(), index, values.data(), values.size()));
  }
  ftq_lora *get() const noexcept { return h_.get(); }

 private:
  Lora() = default;
  detail::Handle<ftq_lora, ftq_lora_destroy> h_;
};

inline std::array<int64_t, 2> Model::weight_shape(const std::string &name) const {
  std::array<int64_t, 2> shape{};
  detail::call([&] { return ftq_model_merged_weight(get(), nullptr, name.c_str(), nullptr, 0, shape.data()); });
  return shape;
}

inline std::vector<float> Model::merged_weight(const std::string &name, const Lora *lora) const {
  auto shape = weight_shape(name);
  std::vector<float> v(static_cast<size_t>(shape[0] * shape[1]));
  detail::call([&] {
    return ftq_model_merged_weight(get(), lora ? lora->get() : nullptr, name.c_str(), v.data(), v.size(), nullptr);
  });
  return v;
}

inline void Model::save_merged(const std::string &dir, const Lora *lora, const Options *opts) {
  detail::call([&] { return ftq_model_save_merged(get(), lora ? lora->get() : nullptr, dir.c_str(), ptr(opts)); });
}

/// A quantized tensor (ftq_quantizer.h).
class QTensor {
 public:
  explicit QTensor(ftq_qtensor *t) : h_(t) {}
  std::vector<int64_t> shape() const {
    int64_t s[4];
    int n = ftq_qtensor_shape(get(), s, 4);
    const int k = n < 0 ? 0 : (n > 4 ? 4 : n); // bounded, so the compiler sees the range is inside s
    return std::vector<int64_t>(s, s + k);
  }
  size_t bytes() const { return ftq_qtensor_bytes(get()); }
  std::vector<float> dequantize() const {
    size_t n = 1;
    const std::vector<int64_t> dims = shape();
    for (int64_t d : dims) n *= static_cast<size_t>(d);
    std::vector<float> out(n);
    detail::check(ftq_qtensor_dequantize_into(get(), out.data(), FTQ_FLOAT32, FTQ_HOST, n));
    return out;
  }
  ftq_qtensor *get() const noexcept { return h_.get(); }

 private:
  detail::Handle<ftq_qtensor, ftq_qtensor_destroy> h_;
};

/// A quantization scheme on a context.
class Quantizer {
 public:
  explicit Quantizer(Context &ctx, const Options *opts = nullptr) {
    detail::create(h_, [&](ftq_quantizer **out) { return ftq_quantizer_create(ctx.get(), ptr(opts), out); });
  }
  QTensor quantize(const std::vector<float> &values, const std::vector<int64_t> &shape) {
    ftq_qtensor *t = nullptr;
    detail::check(ftq_quantizer_quantize(get(), values.data(), FTQ_FLOAT32, FTQ_HOST, static_cast<int>(shape.size()),
                                         shape.data(), &t));
    return QTensor(t);  // owned from here
  }
  /// Error statistics, indexed by ::ftq_qstat.
  std::vector<double> error_stats(const std::vector<float> &values, const std::vector<int64_t> &shape) {
    std::vector<double> s(6);
    detail::check(ftq_quantizer_error_stats(get(), values.data(), FTQ_FLOAT32, FTQ_HOST,
                                            static_cast<int>(shape.size()), shape.data(), s.data(), s.size()));
    return s;
  }
  ftq_quantizer *get() const noexcept { return h_.get(); }

 private:
  detail::Handle<ftq_quantizer, ftq_quantizer_destroy> h_;
};

/// A tokenizer (ftq_tokenizer.h).
class Tokenizer {
 public:
  explicit Tokenizer(const std::string &path, const Options *opts = nullptr) {
    detail::create(h_, [&](ftq_tokenizer **out) { return ftq_tokenizer_load(path.c_str(), ptr(opts), out); });
  }
  std::vector<int32_t> encode(std::string_view text, unsigned flags = 0) const {
    int32_t *ids = nullptr;
    size_t n = 0;
    detail::check(ftq_tokenizer_encode(get(), text.data(), text.size(), flags, &ids, &n));
    std::vector<int32_t> v(ids, ids + n);
    ftq_free(ids);
    return v;
  }
  std::string decode(const std::vector<int32_t> &ids, unsigned flags = 0) const {
    char *text = nullptr;
    size_t len = 0;
    detail::check(ftq_tokenizer_decode(get(), ids.data(), ids.size(), flags, &text, &len));
    return detail::take(text, len);
  }
  std::string piece(int32_t id) const {
    const char *p = nullptr;
    size_t len = 0;
    detail::check(ftq_tokenizer_token_to_piece(get(), id, &p, &len));
    return std::string(p, len);
  }
  std::string apply_chat_template(const std::string &messages_json, bool add_generation_prompt) const {
    char *text = nullptr;
    size_t len = 0;
    detail::check(ftq_tokenizer_apply_chat_template(get(), messages_json.c_str(), add_generation_prompt ? 1 : 0,
                                                    &text, &len));
    return detail::take(text, len);
  }
  int64_t vocab_size() const { return ftq_tokenizer_vocab_size(get()); }
  ftq_tokenizer *get() const noexcept { return h_.get(); }

 private:
  detail::Handle<ftq_tokenizer, ftq_tokenizer_destroy> h_;
};

/// A batch of token arrays (ftq_dataset.h).
class Batch {
 public:
  Batch() { detail::create(h_, [](ftq_batch **out) { return ftq_batch_create(out); }); }
  int64_t rows() const { return ftq_batch_rows(get()); }
  int64_t seq_len() const { return ftq_batch_seq_len(get()); }
  const int32_t *input_ids() const { return ftq_batch_input_ids(get()); }
  const int32_t *labels() const { return ftq_batch_labels(get()); }
  int64_t num_loss_tokens() const { return ftq_batch_num_loss_tokens(get()); }
  ftq_batch *get() const noexcept { return h_.get(); }

 private:
  detail::Handle<ftq_batch, ftq_batch_destroy> h_;
};

/// A tokenized JSONL data set.
class Dataset {
 public:
  Dataset(Context *ctx, const Tokenizer &tok, const std::string &path, const Options *opts = nullptr) {
    detail::create(h_, [&](ftq_dataset **out) {
      return ftq_dataset_load(ctx ? ctx->get() : nullptr, tok.get(), path.c_str(), ptr(opts), out);
    });
  }
  int64_t num_examples(ftq_split split = FTQ_SPLIT_TRAIN) const { return ftq_dataset_num_examples(get(), split); }
  void next_batch(Batch &b) { detail::check(ftq_dataset_next_batch(get(), b.get())); }
  void get_batch(Batch &b, int64_t index, int64_t epoch = 0, ftq_split split = FTQ_SPLIT_TRAIN) {
    detail::check(ftq_dataset_get_batch(get(), split, epoch, index, b.get()));
  }
  ftq_dataset *get() const noexcept { return h_.get(); }

 private:
  detail::Handle<ftq_dataset, ftq_dataset_destroy> h_;
};

/// transformers' Trainer loop (ftq_trainer.h).
class Trainer {
 public:
  using LogFn = std::function<bool(std::string_view record)>;
  using ProgressFn = std::function<bool(int64_t step, int64_t total, double loss, double lr, double tokens_per_s)>;

  Trainer(Model &model, Lora &lora, Dataset &data, const Options *opts = nullptr)
      : cb_(std::make_unique<Callbacks>()) {
    detail::create(h_, [&](ftq_trainer **out) {
      return ftq_trainer_create(model.get(), lora.get(), data.get(), ptr(opts), out);
    });
  }
  /// Every log record as JSON text; returning true stops training.
  void on_log(LogFn fn) {
    cb_->log = std::move(fn);
    detail::check(ftq_trainer_set_log_callback(get(), cb_->log ? &Trainer::log_tramp : nullptr, cb_.get()));
  }
  /// After every step; returning true stops training.
  void on_progress(ProgressFn fn) {
    cb_->progress = std::move(fn);
    detail::check(
        ftq_trainer_set_progress_callback(get(), cb_->progress ? &Trainer::progress_tramp : nullptr, cb_.get()));
  }
  /// Makes this trainer one rank of a data-parallel run (nullptr detaches);
  /// before the first step, the plan and load_checkpoint(). `comm` must
  /// outlive the trainer.
  void set_comm(Comm *comm) {
    detail::call([&] { return ftq_trainer_set_comm(get(), comm ? comm->get() : nullptr); });
  }
  /// Trains: true when complete, false when a callback stopped it.
  bool train() {
    ftq_status s = detail::guarded([&] { return ftq_trainer_train(get()); });
    if (s == FTQ_ERR_CANCELLED) return false;
    detail::check(s);
    return true;
  }
  /// One optimizer step; returns its loss.
  double step() {
    double loss = NAN;
    ftq_status s = detail::guarded([&] { return ftq_trainer_step(get(), &loss); });
    if (s != FTQ_ERR_CANCELLED) detail::check(s);
    return loss;
  }
  void save_checkpoint(const std::string &dir) {
    detail::call([&] { return ftq_trainer_save_checkpoint(get(), dir.c_str()); });
  }
  void load_checkpoint(const std::string &dir) {
    detail::call([&] { return ftq_trainer_load_checkpoint(get(), dir.c_str()); });
  }
  int64_t global_step() const { return ftq_trainer_global_step(get()); }
  int64_t total_steps() const { return ftq_trainer_total_steps(get()); }
  ftq_trainer *get() const noexcept { return h_.get(); }

 private:
  struct Callbacks {
    LogFn log;
    ProgressFn progress;
  };
  static int log_tramp(void *user, const char *record) {
    try {
      return static_cast<Callbacks *>(user)->log(record) ? 1 : 0;
    } catch (...) {
      detail::keep_current_exception();
      return 1;
    }
  }
  static int progress_tramp(void *user, int64_t step, int64_t total, double loss, double lr, double tps) {
    try {
      return static_cast<Callbacks *>(user)->progress(step, total, loss, lr, tps) ? 1 : 0;
    } catch (...) {
      detail::keep_current_exception();
      return 1;
    }
  }
  std::unique_ptr<Callbacks> cb_;  // destroyed after the trainer
  detail::Handle<ftq_trainer, ftq_trainer_destroy> h_;
};

/// The example evaluator's comparison (ftq_dataset_exact_match()).
inline bool exact_match(std::string_view prediction, std::string_view reference) {
  return ftq_dataset_exact_match(prediction.data(), prediction.size(), reference.data(), reference.size()) != 0;
}

}  // namespace ftq

#endif  // LIBFTQ_HPP
