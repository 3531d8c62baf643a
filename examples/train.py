"""Train an embedding model with one of the papers' recipes.

    python examples/train.py --recipe llave --backbone Qwen/Qwen2-VL-2B-Instruct --train_data rows.jsonl \
        --per_device_train_batch_size 32 --output_dir runs/llave
    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/train.py --recipe llave ...
    torchrun --nproc_per_node 8 examples/train.py --recipe abc-pretrain ...

Arguments: `vlembed.trainer.launch.ModelArguments`, `DataArguments` and
`vlembed.ContrastiveTrainingArguments` (every `transformers.TrainingArguments` flag works);
``python examples/train.py --help`` lists them. ``--recipe`` sets the paper's defaults first.
"""

import sys

from vlembed.trainer.launch import main

if __name__ == "__main__":
    sys.exit(main())
