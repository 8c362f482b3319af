/* commands.h: the subcommands of the jtrak CLI, one cmd_<name>.c each (git's command table). Each
 * returns the process exit status: 0 success, 1 bad input or failure (one line on stderr), 2 usage. */
#ifndef JTRAK_CLI_COMMANDS_H
#define JTRAK_CLI_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_demo_ldm(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_featurize(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_lds(int argc, char **argv);
int cmd_counterfactual(int argc, char **argv);
int cmd_train_vae(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_encode_text(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_pipeline(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_export(int argc, char **argv);

#endif
