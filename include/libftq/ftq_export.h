/**
 * @file ftq_export.h
 * @brief Symbol export and language-linkage macros shared by every libftq header.
 *
 * Every exported function is marked FTQ_API. The shared library is built
 * with hidden visibility by default, so anything not marked stays internal.
 */
#ifndef LIBFTQ_FTQ_EXPORT_H
#define LIBFTQ_FTQ_EXPORT_H

/** @def FTQ_API
 *  Marks a function exported from the shared library (default visibility). */
#if defined(_WIN32) && !defined(FTQ_STATIC)
#  if defined(FTQ_BUILDING_LIBRARY)
#    define FTQ_API __declspec(dllexport)
#  else
#    define FTQ_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define FTQ_API __attribute__((visibility("default")))
#else
#  define FTQ_API
#endif

/** @def FTQ_DEPRECATED(msg)
 *  Marks a function that will be removed at the next major version. Define
 *  FTQ_DISABLE_DEPRECATE_WARNINGS to silence the warning. */
#if defined(FTQ_DISABLE_DEPRECATE_WARNINGS)
#  define FTQ_DEPRECATED(msg)
#elif defined(__GNUC__) || defined(__clang__)
#  define FTQ_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#  define FTQ_DEPRECATED(msg)
#endif

/** @def FTQ_EXTERN_C_BEGIN
 *  Opens C linkage for the declarations that follow when compiled as C++. */
/** @def FTQ_EXTERN_C_END
 *  Closes the C linkage opened by FTQ_EXTERN_C_BEGIN. */
#ifdef __cplusplus
#  define FTQ_EXTERN_C_BEGIN extern "C" {
#  define FTQ_EXTERN_C_END }
#else
#  define FTQ_EXTERN_C_BEGIN
#  define FTQ_EXTERN_C_END
#endif

#endif /* LIBFTQ_FTQ_EXPORT_H */
