/* Finds and loads the CUDA backend module (libftq-cuda.so) on first use.
 * Keeping CUDA out of libftq itself lets one build serve hosts with and
 * without the CUDA libraries (see docs/design.md, "CUDA as a module"). */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "core/error.h"
#include "core/log.h"
#include "libftq/ftq_version.h"

#ifndef FTQ_WITH_CUDA

ftq_status ftq_backend_cuda(const ftq_backend **out) {
  *out = NULL;
  return ftq_error(FTQ_ERR_NO_DEVICE, "libftq was built without CUDA support (configure with -DFTQ_CUDA=ON)");
}

#else

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/context.h"
#include "quant/qtensor.h"

#define MODULE_FILE "libftq-cuda.so"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static const ftq_backend *g_backend;
static int g_tried;
static ftq_status g_status;
static char g_reason[1536];

static void host_log(const ftq_context *ctx, ftq_log_level level, const char *msg) { ftq_log(ctx, level, "%s", msg); }

static const ftq_host_api g_host = {FTQ_BACKEND_ABI, FTQ_VERSION_STRING, ftq_verror, host_log,
                                    ftq_qtensor_dequantize};

/* Tries one path; on failure appends why to `why`. */
static void *try_open(const char *path, char *why, size_t len) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    size_t used = strlen(why);
    const char *e = dlerror();
    snprintf(why + used, len - used, "%s%s", used ? "; " : "", e ? e : path);
  }
  return h;
}

static ftq_status load_module(void) {
  char why[1024] = "";
  char path[1200];
  void *h = NULL;
  const char *env = getenv("FTQ_CUDA_MODULE");
  if (env && *env) h = try_open(env, why, sizeof why);
  if (!h) { /* next to libftq itself (or the executable, when linked statically) */
    Dl_info info;
    if (dladdr((void *)&ftq_backend_cuda, &info) && info.dli_fname) {
      const char *slash = strrchr(info.dli_fname, '/');
      if (slash) {
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname, MODULE_FILE);
        h = try_open(path, why, sizeof why);
      }
    }
  }
#ifdef FTQ_INSTALL_LIBDIR
  if (!h) {
    snprintf(path, sizeof path, "%s/%s", FTQ_INSTALL_LIBDIR, MODULE_FILE);
    h = try_open(path, why, sizeof why);
  }
#endif
  if (!h) h = try_open(MODULE_FILE, why, sizeof why);
  if (!h) return ftq_error(FTQ_ERR_NO_DEVICE, "cannot load the CUDA module %s: %s", MODULE_FILE, why);

  ftq_backend_entry_fn entry;
  *(void **)&entry = dlsym(h, FTQ_BACKEND_ENTRY_NAME);
  if (!entry) {
    dlclose(h);
    return ftq_error(FTQ_ERR_NO_DEVICE, "the CUDA module has no entry point %s", FTQ_BACKEND_ENTRY_NAME);
  }
  ftq_clear_error();
  const ftq_backend *be = entry(&g_host);
  if (!be) { /* the module set the message */
    dlclose(h);
    return ftq_last_error_status() != FTQ_OK ? ftq_last_error_status()
                                             : ftq_error(FTQ_ERR_NO_DEVICE, "the CUDA module refused to start");
  }
  if (be->abi != FTQ_BACKEND_ABI || be->size != sizeof(ftq_backend)) {
    dlclose(h);
    return ftq_error(FTQ_ERR_NO_DEVICE, "the CUDA module was built for another libftq (backend ABI %d, expected %d)",
                     be->abi, FTQ_BACKEND_ABI);
  }
  g_backend = be; /* the module stays loaded for the life of the process */
  return FTQ_OK;
}

ftq_status ftq_backend_cuda(const ftq_backend **out) {
  pthread_mutex_lock(&g_mu);
  if (!g_tried) {
    g_tried = 1;
    g_status = load_module();
    if (g_status != FTQ_OK) snprintf(g_reason, sizeof g_reason, "%s", ftq_last_error());
  }
  ftq_status st = g_status;
  *out = g_backend;
  pthread_mutex_unlock(&g_mu);
  if (st != FTQ_OK) return ftq_error(st, "%s", g_reason);
  return FTQ_OK;
}

#endif /* FTQ_WITH_CUDA */
