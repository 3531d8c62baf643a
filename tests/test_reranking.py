"""MLLM reranking (MM-Embed §4.2): P(True) against a softmax computed by hand from the tiny models' own
logits, batched (left-padded) against one pair at a time, chat templates, prompts, bad input and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.utils import run_cli
from vlembed.reranking import DEFAULT_PROMPTS, MLLMReranker, resolve_prompt


@pytest.fixture(scope="module")
def text_reranker(tiny_model_dir):
    return MLLMReranker.from_pretrained(tiny_model_dir("qwen2"), batch_size=4)


@pytest.fixture(scope="module")
def vision_reranker(tiny_model_dir):
    return MLLMReranker.from_pretrained(tiny_model_dir("qwen2_vl"), batch_size=4)


def hand_probability(reranker: MLLMReranker, query, candidate, **kwargs) -> float:
    """softmax([logit_True, logit_False])[0] of the model's next-token logits, one unpadded pair."""
    text, images = reranker.render(query, candidate, **kwargs)
    special = {"add_special_tokens": not reranker.chat_template}  # a chat template renders its own
    if images:
        inputs = reranker.processor(text=[text], images=[[image.convert("RGB") for image in images]], return_tensors="pt", **special)
    else:
        inputs = reranker.tokenizer([text], return_tensors="pt", **special)
    with torch.no_grad():
        logits = reranker.model(**inputs).logits[0, -1]
    true_logit, false_logit = logits[reranker.true_id].item(), logits[reranker.false_id].item()
    return float(np.exp(true_logit) / (np.exp(true_logit) + np.exp(false_logit)))


QUERIES = ["What is the dog holding?", "A man is playing a guitar on stage tonight.", "cats", "Return the number of items in the queue."]
CANDIDATES = ["a red frisbee", "Someone is strumming a guitar.", "The stock market fell sharply today.", "def qsize(self): return len(self.queue)"]


def test_text_scores_equal_hand_softmax_batched_and_alone(text_reranker):
    batched = text_reranker.score(QUERIES, CANDIDATES, batch_size=4)
    alone = np.array([text_reranker.score([q], [c])[0] for q, c in zip(QUERIES, CANDIDATES)])
    by_hand = np.array([hand_probability(text_reranker, q, c) for q, c in zip(QUERIES, CANDIDATES)])
    np.testing.assert_allclose(batched, by_hand, atol=1e-5)
    np.testing.assert_allclose(alone, by_hand, atol=1e-5)
    assert len(set(np.round(by_hand, 6))) == 4  # the pairs really differ
    assert text_reranker.tokenizer.padding_side == "left"
    text, _ = text_reranker.render(QUERIES[0], CANDIDATES[0])
    assert text == "Question: What is the dog holding?\nPassage: a red frisbee\nDoes the passage answer the question? True or False\n"


def test_vision_scores_equal_hand_softmax_batched_and_alone(vision_reranker, images):
    queries = [{"image": images[0]}, {"image": images[1], "text": "What is shown?"}, "a small dog", {"image": images[2]}]
    candidates = ["a dog", "a cat", {"image": images[3]}, {"image": images[0]}]
    batched = vision_reranker.score(queries, candidates, batch_size=4)
    alone = np.array([vision_reranker.score([q], [c])[0] for q, c in zip(queries, candidates)])
    by_hand = np.array([hand_probability(vision_reranker, q, c) for q, c in zip(queries, candidates)])
    np.testing.assert_allclose(batched, by_hand, atol=1e-5)
    np.testing.assert_allclose(alone, by_hand, atol=1e-5)
    text, pair_images = vision_reranker.render(queries[1], candidates[1])
    assert text == (
        "<|vision_start|><|image_pad|><|vision_end|>\nQuestion: What is shown?\nAnswer: a cat\n"
        "Does the answer correctly answer the question? True or False\n"
    )
    assert pair_images == [images[1]]
    _, both = vision_reranker.render(queries[3], candidates[3])  # image -> image: query image first
    assert both == [images[2], images[0]]


def test_chat_template_rendering(tiny_model_dir):
    reranker = MLLMReranker.from_pretrained(tiny_model_dir("qwen2"))
    reranker.tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    text, _ = reranker.render("a query", "a passage", task="text -> text")
    assert text.startswith("<|im_start|>user\nQuestion: a query") and text.endswith("True or False<|im_end|>\n<|im_start|>assistant\n")
    score = reranker.score(["a query", "another, longer query"], ["a passage", "p"])
    np.testing.assert_allclose(score, [hand_probability(reranker, "a query", "a passage"), hand_probability(reranker, "another, longer query", "p")], atol=1e-5)


def test_chat_template_that_renders_bos_is_not_given_a_second_one(tiny_model_dir, images):
    """A VLM whose tokenizer adds BOS (as Llama / Mistral ones do) and whose chat template writes it too."""
    from tokenizers import processors

    reranker = MLLMReranker.from_pretrained(tiny_model_dir("qwen2_vl"))
    tokenizer = reranker.tokenizer
    bos = "<pad>"  # a special token with no other role in the tiny tokenizer
    bos_id = tokenizer.convert_tokens_to_ids(bos)
    tokenizer.bos_token = bos
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    assert tokenizer("a query").input_ids[0] == bos_id
    reranker.processor.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{% for c in m.content %}"
        "{% if c.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c.text }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    queries, candidates = ["a query", {"image": images[0]}], ["a passage", "a caption of the picture"]
    rendered = [reranker.render(q, c) for q, c in zip(queries, candidates)]
    assert all(text.startswith(bos + "<|im_start|>user\n") for text, _ in rendered)
    batch = reranker._inputs([text for text, _ in rendered], [pair_images for _, pair_images in rendered])
    assert (batch["input_ids"] == bos_id).sum(dim=1).tolist() == [1, 1]  # left padding: BOS is the first real token
    first_real = batch["attention_mask"].argmax(dim=1)
    assert batch["input_ids"][torch.arange(2), first_real].tolist() == [bos_id, bos_id]
    np.testing.assert_allclose(reranker.score(queries, candidates), [hand_probability(reranker, q, c) for q, c in zip(queries, candidates)], atol=1e-5)


def test_rerank_orders_top_k_by_probability(text_reranker):
    candidate_lists = [CANDIDATES, CANDIDATES[:2], CANDIDATES[::-1]]
    orders, scores = text_reranker.rerank(QUERIES[:3], candidate_lists, top_k=3, return_scores=True)
    for query, candidates, order, query_scores in zip(QUERIES, candidate_lists, orders, scores):
        expected = text_reranker.score([query] * min(3, len(candidates)), list(candidates[:3]))
        np.testing.assert_allclose(query_scores, expected, atol=1e-6)
        assert order[: len(expected)] == np.argsort(-expected, kind="stable").tolist()
        assert order[len(expected):] == list(range(len(expected), len(candidates)))  # the tail keeps the retriever order
    assert text_reranker.rerank(QUERIES[:3], candidate_lists, top_k=3) == orders


def test_prompts_and_bad_input(text_reranker, vision_reranker, images, tiny_model_dir):
    assert resolve_prompt(None, "image", "text") == DEFAULT_PROMPTS["image -> text"]
    # MM-Embed §4.2's two quoted prompts, word for word.
    assert DEFAULT_PROMPTS["image -> text"] == "{query_image}\nCaption: {candidate}\nDoes the above daily life image match the caption? True or False"
    assert DEFAULT_PROMPTS["image,text -> text"] == (
        "{query_image}\nQuestion: {query}\nAnswer: {candidate}\nDoes the answer correctly answer the question? True or False"
    )
    assert resolve_prompt(7, "text", "text") == DEFAULT_PROMPTS["image,text -> image"]  # M-BEIR task id
    assert resolve_prompt("text->image", "text", "text") == DEFAULT_PROMPTS["text -> image"]
    assert all(prompt.endswith("True or False") for prompt in DEFAULT_PROMPTS.values())
    with pytest.raises(ValueError, match="Unknown reranking task"):
        resolve_prompt("captioning", "text", "text")
    with pytest.raises(ValueError, match="no {query_image} slot"):
        vision_reranker.score([{"image": images[0]}], ["a dog"], prompt="Caption: {candidate}\nTrue or False")
    with pytest.raises(ValueError, match="text-only model"):
        text_reranker.score([{"image": images[0]}], ["a dog"])
    with pytest.raises(ValueError, match="score takes pairs"):
        text_reranker.score(["a"], ["b", "c"])
    custom = text_reranker.score(["q"], ["c"], prompt="Is '{candidate}' the answer to '{query}'? True or False")
    assert custom[0] == pytest.approx(hand_probability(text_reranker, "q", "c", prompt="Is '{candidate}' the answer to '{query}'? True or False"), abs=1e-5)
    with pytest.raises(ValueError, match="splits it into 4"):
        MLLMReranker.from_pretrained(tiny_model_dir("qwen2"), true_token="Trueish")


def test_cli_rerank_run_file(tmp_path, tiny_model_dir):
    run = tmp_path / "run.jsonl"
    lines = [
        {"query_id": "q0", "query": {"text": QUERIES[0]}, "relevant": ["d1"],
         "candidates": [{"id": f"d{i}", "text": text, "score": 1 - i / 10} for i, text in enumerate(CANDIDATES)]},
        {"query_id": "q1", "query": {"text": QUERIES[1]}, "relevant": ["d2"],
         "candidates": [{"id": f"d{i}", "text": text, "score": 1 - i / 10} for i, text in enumerate(CANDIDATES[:3])]},
    ]
    run.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "reranked.jsonl"
    assert run_cli("rerank", ["--model", tiny_model_dir("qwen2"), "--input", str(run), "--output", str(out), "--top-k", "3", "--task", "text -> text"]) == 0
    reranked = [json.loads(line) for line in out.read_text().splitlines()]
    scores = [c.get("rerank_score") for c in reranked[0]["candidates"]]
    assert sorted(scores[:3], reverse=True) == scores[:3] and scores[3] is None and reranked[0]["candidates"][3]["id"] == "d3"
    metrics = json.loads((tmp_path / "reranked_metrics.json").read_text())
    assert [result["task"] for result in metrics["results"]] == ["run (retriever)", "run (reranked)"]
    assert metrics["results"][0]["metrics"]["hit@1"] == 0.0  # the retriever put d0 first for both
