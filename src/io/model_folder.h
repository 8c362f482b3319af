/* model_folder.h: the file names of diffusers model folders (config.json +
 * diffusion_pytorch_model.safetensors, as save_pretrained writes and from_pretrained reads them;
 * loading and saving a whole model is model/model.h) and the slab I/O that model/ and other files
 * reuse (EMA weights, optimizer moments, checkpoints): a float slab described by a
 * ParamLayout is written as one F32 tensor per layout entry, named by the entry (plus an optional
 * prefix), and read back with every name and shape checked.
 *
 * Reading accepts what diffusers' loader accepts for this model family (unet2d.md section 6.3):
 * the legacy attention names query/key/value/proj_attn for to_q/to_k/to_v/to_out.0, a [C,C,1,1]
 * tensor where [C,C] is expected, and F16/BF16/F64 data (converted to float32). A missing tensor,
 * an extra tensor, a wrong shape or a non-float dtype is an error naming the file and the tensor.
 */
#ifndef JTRAK_IO_MODEL_FOLDER_H
#define JTRAK_IO_MODEL_FOLDER_H

#include "core/common.h"
#include "core/layout.h"
#include "io/safetensors.h"

#define MODEL_CONFIG_FILE "config.json"
#define MODEL_WEIGHTS_FILE "diffusion_pytorch_model.safetensors"

/* dir/file when it exists, else its fp16 variant dir/STEM.fp16.safetensors (the hub's
 * save_pretrained(variant="fp16") name) when that exists, else dir/file (malloc'd): the weights
 * file a folder is read from. The variant's F16 tensors are converted to float32 on reading. */
char *model_folder_weights_path(const char *dir, const char *file);

/* ---- slabs ---- */

/* Adds every layout entry as tensor prefix + name, stored as `stored` (ST_F32, or ST_F16 / ST_BF16
 * to halve the file). The slab must stay valid until st_writer_write. prefix may be NULL or "". */
void model_slab_add(StWriter *w, const char *prefix, const ParamLayout *l, const float *slab,
                    StDtype stored);
/* Reads every layout entry (tensor prefix + name, legacy attention names accepted) from an open
 * file into slab (l->total floats). Every tensor of the file whose name starts with prefix must be
 * claimed by an entry (so with prefix "" the file must hold exactly the layout). */
int model_slab_read(StFile *f, const char *prefix, const ParamLayout *l, float *slab, JtError *err);

/* One slab in its own file, tensors named exactly as the layout, metadata {"format":"pt"}. */
int model_slab_save(const char *path, const ParamLayout *l, const float *slab, JtError *err);
int model_slab_load(const char *path, const ParamLayout *l, float *slab, JtError *err);

/* mkdir -p: creates dir and its missing parents (mode 0755). */
int model_mkdirs(const char *dir, JtError *err);

#endif
