/**
 * @file ftq_options.h
 * @brief Settings by name with typed values, and the registry that lists them.
 *
 * Every setting of every libftq object is an option with a name (taken from
 * PEFT, transformers or bitsandbytes where they have one: `r`, `lora_alpha`,
 * `learning_rate`, ...), a type, a default, an allowed range or set of
 * choices, and a one-line description. An ::ftq_options object holds the
 * values a caller has set; objects read the options of their group and take
 * the registry's default for the rest. Unknown names, wrong types and values
 * out of range are errors that name the option.
 *
 * One options object may carry the settings of every group (like one JSON
 * configuration file); each object reads only its own group.
 */
#ifndef LIBFTQ_FTQ_OPTIONS_H
#define LIBFTQ_FTQ_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_export.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** A set of option values (opaque). */
typedef struct ftq_options ftq_options;

/** The type of an option's value. Values are pinned. */
typedef enum ftq_option_type {
  FTQ_OPTION_INT = 0,    /**< 64-bit signed integer. */
  FTQ_OPTION_FLOAT = 1,  /**< double. An integer value may be given for it. */
  FTQ_OPTION_BOOL = 2,   /**< 0 or 1. */
  FTQ_OPTION_STRING = 3  /**< UTF-8 text; may be restricted to a set of choices. */
} ftq_option_type;

/* ---------------------------------------------------------------------- */
/** @name Registry: every option the library knows                          */
/** @{ */

/** @return the number of options in the registry. Indices run 0..count-1 and
 *  are stable within one library build only; use names across builds. */
FTQ_API size_t ftq_option_count(void);

/**
 * Looks an option up by name.
 * @param name option name, e.g. "lora_alpha"
 * @param index receives the option's registry index
 * @return FTQ_OK, or FTQ_ERR_UNKNOWN_OPTION if no option has that name
 */
FTQ_API ftq_status ftq_option_find(const char *name, size_t *index);

/** @param index registry index
 *  @return the option's name, or NULL if out of range */
FTQ_API const char *ftq_option_name(size_t index);

/** @param index registry index
 *  @return the ::ftq_option_type of the option, or -1 if out of range */
FTQ_API int ftq_option_type_of(size_t index);

/** @param index registry index
 *  @return the group the option belongs to ("context", "lora", "quant",
 *          "train", ...), or NULL if out of range */
FTQ_API const char *ftq_option_group(size_t index);

/** @param index registry index
 *  @return the option's one-line description, or NULL if out of range */
FTQ_API const char *ftq_option_doc(size_t index);

/** @param index registry index
 *  @return the option's default value as text ("64", "0.0001", "true",
 *          "nf4", "" for an empty string), or NULL if out of range */
FTQ_API const char *ftq_option_default(size_t index);

/**
 * Reports the inclusive numeric range of an int or float option.
 * Unbounded sides are -INFINITY / +INFINITY.
 * @param index registry index
 * @param min receives the smallest allowed value (may be NULL)
 * @param max receives the largest allowed value (may be NULL)
 * @return FTQ_OK; FTQ_ERR_NOT_FOUND for a bad index; FTQ_ERR_OPTION_TYPE for
 *         a bool or string option
 */
FTQ_API ftq_status ftq_option_range(size_t index, double *min, double *max);

/** @param index registry index
 *  @return the allowed values of a string option as one text with '|'
 *          between them (e.g. "nf4|fp4"), or NULL if it takes any text or the
 *          index is out of range. For a list option (ftq_option_is_list())
 *          each comma-separated item must be one of the choices. */
FTQ_API const char *ftq_option_choices(size_t index);

/** @param index registry index
 *  @return 1 if the string option holds a comma-separated list (JSON arrays
 *          of strings are accepted for it), 0 if not or out of range */
FTQ_API int ftq_option_is_list(size_t index);

/** @} */

/* ---------------------------------------------------------------------- */
/** @name Option sets                                                       */
/** @{ */

/** Creates an empty option set (every option at its default).
 *  @param out receives the new set; destroy it with ftq_options_destroy()
 *  @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT or FTQ_ERR_OUT_OF_MEMORY */
FTQ_API ftq_status ftq_options_create(ftq_options **out);

/** Destroys an option set.
 *  @param opts the set; NULL is a no-op */
FTQ_API void ftq_options_destroy(ftq_options *opts);

/** Creates an independent copy of an option set.
 *  @param src the set to copy (NULL gives an empty set)
 *  @param out receives the copy
 *  @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT or FTQ_ERR_OUT_OF_MEMORY */
FTQ_API ftq_status ftq_options_copy(const ftq_options *src, ftq_options **out);

/**
 * Sets an int option. On error the set is left unchanged.
 * @param opts the set
 * @param name option name
 * @param value the value
 * @return FTQ_OK; FTQ_ERR_UNKNOWN_OPTION; FTQ_ERR_OPTION_TYPE if it is not an
 *         int option (an int may be given to a float option);
 *         FTQ_ERR_OPTION_RANGE if out of range
 */
FTQ_API ftq_status ftq_options_set_int(ftq_options *opts, const char *name, int64_t value);

/**
 * Sets a float option (finite values only).
 * @param opts the set
 * @param name option name
 * @param value the value
 * @return as ftq_options_set_int(); NaN and infinities are FTQ_ERR_OPTION_RANGE
 */
FTQ_API ftq_status ftq_options_set_float(ftq_options *opts, const char *name, double value);

/**
 * Sets a bool option.
 * @param opts the set
 * @param name option name
 * @param value any non-zero value means true
 * @return FTQ_OK, FTQ_ERR_UNKNOWN_OPTION or FTQ_ERR_OPTION_TYPE
 */
FTQ_API ftq_status ftq_options_set_bool(ftq_options *opts, const char *name, int value);

/**
 * Sets a string option; the text is copied.
 * @param opts the set
 * @param name option name
 * @param value the text; for a list option the items separated by commas
 *        (spaces around items are ignored, empty items dropped)
 * @return FTQ_OK; FTQ_ERR_UNKNOWN_OPTION; FTQ_ERR_OPTION_TYPE;
 *         FTQ_ERR_OPTION_RANGE if the value (or a list item) is not one of
 *         the option's choices
 */
FTQ_API ftq_status ftq_options_set_string(ftq_options *opts, const char *name, const char *value);

/**
 * Sets an option of any type from text, as a command line gives it.
 * @param opts the set
 * @param name option name
 * @param text ints in decimal, floats in any strtod form, bools as
 *        true/false/1/0/yes/no/on/off, strings as they are
 * @return as the typed setters; text that does not parse as the option's
 *         type is FTQ_ERR_OPTION_TYPE
 */
FTQ_API ftq_status ftq_options_set_parse(ftq_options *opts, const char *name, const char *text);

/**
 * Returns an option to its default.
 * @param opts the set
 * @param name option name
 * @return FTQ_OK or FTQ_ERR_UNKNOWN_OPTION
 */
FTQ_API ftq_status ftq_options_unset(ftq_options *opts, const char *name);

/**
 * Tells whether an option was set explicitly.
 * @param opts the set (NULL: nothing is set)
 * @param name option name
 * @param is_set receives 1 if set, 0 if at its default
 * @return FTQ_OK or FTQ_ERR_UNKNOWN_OPTION
 */
FTQ_API ftq_status ftq_options_is_set(const ftq_options *opts, const char *name, int *is_set);

/**
 * Reads an int option: the value set, or the default.
 * @param opts the set (NULL: every option at its default)
 * @param name option name
 * @param value receives the value
 * @return FTQ_OK, FTQ_ERR_UNKNOWN_OPTION or FTQ_ERR_OPTION_TYPE
 */
FTQ_API ftq_status ftq_options_get_int(const ftq_options *opts, const char *name, int64_t *value);

/**
 * Reads a float option. An int option may not be read as float.
 * @param opts the set (may be NULL)
 * @param name option name
 * @param value receives the value
 * @return FTQ_OK, FTQ_ERR_UNKNOWN_OPTION or FTQ_ERR_OPTION_TYPE
 */
FTQ_API ftq_status ftq_options_get_float(const ftq_options *opts, const char *name, double *value);

/**
 * Reads a bool option.
 * @param opts the set (may be NULL)
 * @param name option name
 * @param value receives 0 or 1
 * @return FTQ_OK, FTQ_ERR_UNKNOWN_OPTION or FTQ_ERR_OPTION_TYPE
 */
FTQ_API ftq_status ftq_options_get_bool(const ftq_options *opts, const char *name, int *value);

/**
 * Reads a string option.
 * @param opts the set (may be NULL)
 * @param name option name
 * @param value receives the text, valid until the option is set or unset
 *        again or the set is destroyed
 * @return FTQ_OK, FTQ_ERR_UNKNOWN_OPTION or FTQ_ERR_OPTION_TYPE
 */
FTQ_API ftq_status ftq_options_get_string(const ftq_options *opts, const char *name, const char **value);

/**
 * Sets options from a JSON object text, e.g. `{"r": 64, "lora_alpha": 16,
 * "target_modules": ["q_proj", "v_proj"]}`. All keys are checked before any
 * is applied: on error the set is unchanged and the message names the key.
 * A null value unsets the option; duplicate keys are an error. A string
 * option whose choices include "true" and "false" also takes a JSON boolean
 * (PEFT writes `"init_lora_weights": true`).
 * @param opts the set
 * @param json_text NUL-terminated JSON
 * @return FTQ_OK; FTQ_ERR_FORMAT for malformed JSON (with line and column);
 *         or the error of the first key that cannot be applied
 */
FTQ_API ftq_status ftq_options_load_json(ftq_options *opts, const char *json_text);

/**
 * As ftq_options_load_json(), reading the object from a file.
 * @param opts the set
 * @param path the JSON file
 * @return as ftq_options_load_json(), plus FTQ_ERR_IO if the file cannot be
 *         read; messages name the file
 */
FTQ_API ftq_status ftq_options_load_json_file(ftq_options *opts, const char *path);

/**
 * Writes the set as a JSON object, keys in registry order.
 * @param opts the set (may be NULL)
 * @param include_defaults 0: only options that were set; 1: every option
 * @param out receives a NUL-terminated text; free it with ftq_free()
 * @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT or FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_options_to_json(const ftq_options *opts, int include_defaults, char **out);

/** @} */

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_OPTIONS_H */
