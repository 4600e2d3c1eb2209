"""The chapter 3 toy task: digit words in, reversed numerals out, a truly held-out test split."""

import pytest
import torch

from companion.tasks.toy_translation import (BOS, EOS, PAD, SOURCE_VOCAB, TARGET_VOCAB, TaskConfig, encode,
                                       make_splits, source_ids, target_text, translate)


def test_translate_reverses_and_changes_vocabulary():
    assert translate("seven two nine four") == "4 9 2 7"
    assert translate("zero") == "0"
    with pytest.raises(ValueError, match="number words"):
        translate("seven eleven")
    with pytest.raises(ValueError, match="number words"):
        translate("   ")
    with pytest.raises(TypeError, match="sentence"):
        translate(7)


def test_encode_builds_shifted_teacher_forcing_targets():
    split = encode([[7, 2, 9], [4]])
    assert split.src.tolist() == [[8, 3, 10], [5, 0, 0]]
    assert split.src_lengths.tolist() == [3, 1]
    assert split.tgt_out.tolist() == [[12, 5, 10, EOS], [7, EOS, PAD, PAD]]
    assert split.tgt_in.tolist() == [[BOS, 12, 5, 10], [BOS, 7, PAD, PAD]]
    assert split.sentence(0) == "seven two nine" and split.reference(0) == "9 2 7"
    assert source_ids("seven two nine") == split.src[0].tolist()
    assert [SOURCE_VOCAB[i] for i in split.src[0]] == ["seven", "two", "nine"]
    assert target_text(split.tgt_in[0]) == "9 2 7"  # <bos> dropped
    assert TARGET_VOCAB[3] == "0" and len(TARGET_VOCAB) == 13
    with pytest.raises(ValueError, match="digits"):
        encode([[1, 12]])
    with pytest.raises(ValueError, match="non-empty"):
        encode([[]])


def test_splits_are_seeded_disjoint_and_cover_every_length():
    config = TaskConfig(min_length=3, max_length=8, train_size=3000, test_per_length=20)
    train, test = make_splits(config)
    train2, test2 = make_splits(config)
    assert torch.equal(train.src, train2.src) and torch.equal(test.src, test2.src)
    assert sorted(test.src_lengths.tolist()) == [L for L in range(3, 9) for _ in range(20)]
    held_out = {test.sentence(n) for n in range(len(test))}
    assert len(held_out) == len(test)  # distinct test sentences
    assert not held_out & {train.sentence(n) for n in range(len(train))}
    assert 2800 < len(train) <= 3000  # only the (few) collisions with the test split are dropped
    other, _ = make_splits(TaskConfig(min_length=3, max_length=8, train_size=3000, test_per_length=20, seed=1))
    assert not torch.equal(other.src[:50], train.src[:50])


def test_batch_trims_padding_and_task_config_is_checked():
    train, _ = make_splits(TaskConfig(min_length=2, max_length=9, train_size=200, test_per_length=2))
    index = torch.tensor([0, 1, 2, 3])
    batch = train.batch(index)
    S = int(train.src_lengths[index].max())
    assert batch.src.shape == (4, S) and batch.tgt_in.shape == (4, S + 1)
    with pytest.raises(ValueError, match="exceeds"):
        make_splits(TaskConfig(min_length=5, max_length=4))
    with pytest.raises(ValueError, match="test_per_length"):
        make_splits(TaskConfig(min_length=1, max_length=2, test_per_length=20))
    with pytest.raises(ValueError, match="train_size"):
        make_splits(TaskConfig(train_size=0))
