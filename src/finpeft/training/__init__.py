"""Stage 4, training: the classifier Trainer (classifier.py) with its optimiser set-ups and distillation, MLM
domain adaptation (mlm.py) and from-scratch pretraining (scratch.py). The LLM track trains in finpeft.llm."""
