"""Worker for the 2-process DeepSpeed test: trains a tiny SASRec with the ZeRO stage given on the command line."""

import sys

import torch

from hllm.config import TrainConfig
from hllm.data.splits import leave_one_out
from hllm.data.synth import SynthConfig, generate
from hllm.models.sasrec import SASRecConfig
from hllm.training.data import ItemVocab, eval_set, train_sequences
from hllm.training.tasks import SASRecTask
from hllm.training.trainer import train

out_dir, zero_stage = sys.argv[1], int(sys.argv[2])
dataset = generate(SynthConfig(n_users=60, n_items=50, n_topics=4, max_seq_len=10, seed=1))
split, vocab = leave_one_out(dataset.interactions), ItemVocab.from_items(dataset.items)
torch.manual_seed(0)
task = SASRecTask(SASRecConfig(num_items=vocab.num_items, hidden=16, num_layers=1, num_heads=1, max_seq_len=10))
config = TrainConfig(model="sasrec", epochs=2, batch_size=8, max_seq_len=10, zero_stage=zero_stage)
train(task, train_sequences(split, vocab), eval_set(split, vocab, "valid"), config, out_dir, show_progress=False)
