/**
 * @file ftq_version.h
 * @brief Compile-time and run-time version of libftq.
 *
 * Releases with the same major version are ABI compatible: a program built
 * against 0.x headers runs against any later 0.y library (y >= x). The
 * shared library's SONAME carries the major version (libftq.so.0).
 */
#ifndef LIBFTQ_FTQ_VERSION_H
#define LIBFTQ_FTQ_VERSION_H

#include "ftq_export.h"

#define FTQ_VERSION_MAJOR 0 /**< Major version: changes only with an ABI break. */
#define FTQ_VERSION_MINOR 1 /**< Minor version: grows when API is added. */
#define FTQ_VERSION_PATCH 0 /**< Patch version: fixes only. */

/** Version as one comparable integer: major*10000 + minor*100 + patch. */
#define FTQ_VERSION_NUMBER \
  (FTQ_VERSION_MAJOR * 10000 + FTQ_VERSION_MINOR * 100 + FTQ_VERSION_PATCH)

/** Helper of FTQ_VERSION_STR: stringizes its argument. */
#define FTQ_VERSION_STR_(x) #x
/** Helper of FTQ_VERSION_STRING: stringizes a macro's value. */
#define FTQ_VERSION_STR(x) FTQ_VERSION_STR_(x)
/** Version as a string, "MAJOR.MINOR.PATCH". */
#define FTQ_VERSION_STRING                                          \
  FTQ_VERSION_STR(FTQ_VERSION_MAJOR) "." FTQ_VERSION_STR(FTQ_VERSION_MINOR) \
  "." FTQ_VERSION_STR(FTQ_VERSION_PATCH)

FTQ_EXTERN_C_BEGIN

/** @return the run-time library's version as FTQ_VERSION_NUMBER encodes it.
 *  Compare with FTQ_VERSION_NUMBER to detect a header/library mismatch. */
FTQ_API int ftq_version_number(void);

/** @return the run-time library's version string, e.g. "0.1.0"; static storage. */
FTQ_API const char *ftq_version_string(void);

/**
 * Reports the run-time library's version components. Any pointer may be NULL.
 * @param major receives FTQ_VERSION_MAJOR of the library that is running
 * @param minor receives FTQ_VERSION_MINOR
 * @param patch receives FTQ_VERSION_PATCH
 */
FTQ_API void ftq_version(int *major, int *minor, int *patch);

/**
 * @return a one-line description of how this library was built, in
 * "key=value" words separated by spaces (static storage), e.g.
 * "version=0.1.0 cuda=module nccl=on blas=openblas sanitize=off". Stable keys:
 * version, cuda (module|off), cuda_archs, nccl (on|off), blas (name|off),
 * sanitize (on|off), build_type.
 */
FTQ_API const char *ftq_build_info(void);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_VERSION_H */
