"""The task losses push likelihood the way the labels say."""

import torch

from learning.losses import collate, kto_loss, sft_ul_loss


def test_it_collates_prompt_and_reply_with_a_reply_mask():
    batch = collate([((1, 2), (3, 4), 1), ((5,), (6,), -1)], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert batch.reply_mask.tolist() == [[False, False, True, True], [False, True, False, False]]
    assert batch.labels.tolist() == [1.0, -1.0]


def test_sft_ul_lowers_with_likely_good_and_unlikely_bad_tokens():
    mask = torch.ones(2, 3, dtype=torch.bool)
    labels = torch.tensor([1.0, -1.0])
    confident = torch.log(torch.tensor([[0.9] * 3, [0.1] * 3]))
    wrong_way = torch.log(torch.tensor([[0.1] * 3, [0.9] * 3]))
    assert sft_ul_loss(confident, mask, labels) < sft_ul_loss(wrong_way, mask, labels)
    # Hand value: NLL of 0.9 and unlikelihood −log(1 − 0.1), averaged.
    expected = (-torch.log(torch.tensor(0.9)) - torch.log(torch.tensor(0.9))) / 2
    torch.testing.assert_close(sft_ul_loss(confident, mask, labels), expected)


def test_kto_rewards_raising_good_and_lowering_bad_replies():
    labels = torch.tensor([1.0, -1.0])
    reference = torch.tensor([-10.0, -10.0])
    aligned = kto_loss(torch.tensor([-8.0, -12.0]), reference, labels)
    misaligned = kto_loss(torch.tensor([-12.0, -8.0]), reference, labels)
    assert aligned < misaligned
    policy = torch.tensor([-9.0, -11.0], requires_grad=True)
    kto_loss(policy, reference, labels).backward()
    assert policy.grad[0] < 0 < policy.grad[1]  # descent raises the good, lowers the bad
