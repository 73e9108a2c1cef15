/* The list of every module's option table. Each module defines its table
 * next to the code that reads it (FTQ_OPTION_TABLE in core/options.h) and
 * adds one line here. Registry order is the order of this list. */
#include "core/options.h"

extern const ftq_option_table ftq_context_options;
extern const ftq_option_table ftq_model_options;
extern const ftq_option_table ftq_optim_options;
extern const ftq_option_table ftq_quant_options;
extern const ftq_option_table ftq_tokenizer_options;
extern const ftq_option_table ftq_data_options;
extern const ftq_option_table ftq_lora_options;
extern const ftq_option_table ftq_generate_options;
extern const ftq_option_table ftq_graph_options;
extern const ftq_option_table ftq_train_options;
extern const ftq_option_table ftq_peft_options;
extern const ftq_option_table ftq_qat_options;
extern const ftq_option_table ftq_merge_options;
extern const ftq_option_table ftq_dist_options;

const ftq_option_table *const ftq_option_tables[] = {
    &ftq_context_options,
    &ftq_model_options,
    &ftq_optim_options,
    &ftq_quant_options,
    &ftq_tokenizer_options,
    &ftq_data_options,
    &ftq_lora_options,
    &ftq_generate_options,
    &ftq_graph_options,
    &ftq_train_options,
    &ftq_peft_options,
    &ftq_qat_options,
    &ftq_merge_options,
    &ftq_dist_options,
};
const size_t ftq_option_table_count = sizeof(ftq_option_tables) / sizeof(ftq_option_tables[0]);
