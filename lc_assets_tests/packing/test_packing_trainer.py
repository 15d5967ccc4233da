"""A trainer takes the packed dataset as it is: one HF Trainer step of a tiny random Llama on a 16k-token sample.

The loss the Trainer reports equals a hand computation over the target tokens only, and the
loss has no gradient with respect to any prediction outside the loss spans.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lc_assets.lib.packing import PackingConfig, pack_sections, write_outputs
from lc_assets.lib.packing.training import PackedCollator
from lc_assets.lib.tokenizer import load_tokenizer
from lc_assets_tests.packing.tokenizer_dirs import build_tokenizer_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

N = 16_384


@pytest.fixture(scope="module")
def packed_dir(tmp_path_factory, pool_factory):
    # a small vocabulary keeps the logits of 16k positions small (a real 128k vocabulary needs ~8 GB)
    tok = load_tokenizer(str(build_tokenizer_dir(tmp_path_factory.mktemp("tok"), "llama3")))
    cfg = PackingConfig(sample_tokens=N, allow_small_samples=True, seed=3)
    result = pack_sections(pool_factory(60, seed=21, prefix="t", paragraphs=(4, 12), pairs=(2, 8)), tok, cfg)
    assert result.samples, result.message
    written = write_outputs(result, tmp_path_factory.mktemp("packed"), cfg)
    return tok, result, written["hf_dataset"]


def _tiny_llama(vocab_size: int):
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=N,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to(torch.float32)


def _hand_loss(model, batch) -> float:
    """Mean cross-entropy of next-token predictions at the target tokens only (labels != -100)."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0].double()
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    targets = torch.nonzero(labels[1:] != -100).flatten() + 1  # positions t whose token is a target
    logp = torch.log_softmax(logits[targets - 1], dim=-1)
    return float(-logp[torch.arange(len(targets)), ids[targets]].mean())


def test_dataset_columns_are_trainer_ready(packed_dir):
    from datasets import load_from_disk

    _, result, path = packed_dir
    ds = load_from_disk(str(path))
    row, sample = ds[0], result.samples[0]
    labels, ids = np.asarray(row["labels"]), np.asarray(row["input_ids"])
    assert len(ids) == len(labels) == len(row["position_ids"]) == N == sum(row["seq_lens"])
    mask = np.zeros(N, bool)
    for a, b in row["loss_spans"]:
        mask[a:b] = True
    assert (labels[~mask] == -100).all() and np.array_equal(labels[mask], ids[mask])
    assert row["position_ids"] == list(range(N))
    assert row["cu_seqlens"] == np.concatenate([[0], np.cumsum(row["seq_lens"])]).tolist()
    assert row["cu_seqlens"][1:-1][: len(sample.section_spans) - 1] == [int(b) for _, b in sample.section_spans[:-1]]
    by_section = PackedCollator(position_ids="section")([row])["position_ids"][0].numpy()
    assert (by_section[np.asarray(row["cu_seqlens"][:-1])] == 0).all()  # restart at every section


def test_one_trainer_step_loss_is_the_target_token_loss(packed_dir, tmp_path):
    from datasets import load_from_disk

    tok, result, path = packed_dir
    ds = load_from_disk(str(path)).select([0])
    vocab = tok.backend.get_vocab_size(with_added_tokens=True)
    model = _tiny_llama(vocab)
    collator = PackedCollator()
    batch = collator([ds[0]])
    expected = _hand_loss(model, batch)

    # no gradient reaches any prediction whose next token is outside the loss spans
    out = model(**batch)
    out.logits.retain_grad()
    out.loss.backward()
    grad = out.logits.grad[0].abs().sum(-1)
    is_target_next = torch.zeros(N, dtype=torch.bool)
    is_target_next[:-1] = batch["labels"][0][1:] != -100
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    assert torch.all(grad[~is_target_next] == 0)
    assert torch.all(grad[is_target_next] > 0)
    assert int(is_target_next.sum()) == int((np.asarray(ds[0]["labels"]) != -100).sum())
    model.zero_grad()

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=1,
        max_steps=1,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        remove_unused_columns=False,  # the collator reads the packed columns itself
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    before = model.lm_head.weight.detach().clone()
    output = trainer.train()
    assert math.isfinite(output.training_loss)
    assert output.training_loss == pytest.approx(expected, rel=1e-4)
    assert not torch.equal(before, model.lm_head.weight)  # the step updated the model
