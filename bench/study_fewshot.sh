#!/usr/bin/env bash
# The few-labels study (issue 39): learning curves, label issues, suggest timing. One job at a time on 2 cores;
# each `finpeft label curve` resumes when re-run. Results: docs/benchmarks.md "Few labels".
set -euo pipefail
export FINPEFT_DATA_DIR=${FINPEFT_DATA_DIR:-../shared/datasets} HF_HUB_OFFLINE=1
# 1. Label issues on FPB 50%-agree vs the annotators' agreement (MiniLM, MPNet, both).
python bench/bench_label_issues.py
# 2. Query strategies with the cheapest learner (a linear head on the frozen MiniLM vectors), FPB.
finpeft label curve fpb -o runs/curve-fpb-head --methods frozen-head --strategies random,kmeans,margin,auto
# 3. Start from what finpeft already knows: the default MiniLM recipe trained on TFNS, its encoder (frozen-head)
#    or its whole classifier (full) as the start of the FPB runs.
finpeft train --data tfns -o runs/tfns-minilm-s42
finpeft label curve fpb -o runs/curve-fpb-tfnsinit --methods frozen-head,full --strategies random,auto \
  model.init_from=runs/tfns-minilm-s42
# 4. A full fine-tune from the plain encoder, and setfit (5 pair iterations), at few labels.
finpeft label curve fpb -o runs/curve-fpb-full --methods full --strategies random,auto
finpeft label curve fpb -o runs/curve-fpb-setfit --methods setfit:method.num_iterations=5 --strategies random,auto \
  --sizes 64,256
# 5. Other text: TFNS tweets, gold-news headlines (4 classes incl. "none"), plain and from the TFNS encoder.
finpeft label curve tfns -o runs/curve-tfns-head --methods frozen-head --strategies random,auto --pool-size 4000
finpeft label curve gold-headlines -o runs/curve-gold-head --methods frozen-head --strategies random,auto --pool-size 4000
finpeft label curve gold-headlines -o runs/curve-gold-head-tfnsinit --methods frozen-head --strategies random,auto \
  --pool-size 4000 model.init_from=runs/tfns-minilm-s42
# 6. Time of `label suggest` on a 10,000-headline pool (cold start, then with a run).
python bench/bench_label_suggest.py --run runs/curve-fpb-head/tracks/minilm-l6-frozen-head-auto-s42/run-n256
# 7. TFNS: setfit on random rows, and the full classifier continued from the FPB default run (README main command).
finpeft label curve tfns -o runs/curve-tfns-setfit --methods setfit:method.num_iterations=5 --strategies random \
  --sizes 64,256 --pool-size 4000
finpeft train -o runs/fpb-minilm-s42
finpeft label curve tfns -o runs/curve-tfns-fpbinit --methods full --strategies random,auto --sizes 64,256 \
  --pool-size 4000 model.init_from=runs/fpb-minilm-s42
finpeft label curve tfns -o runs/curve-tfns-fpbinit-10ep --methods full:train.epochs=10 --strategies auto \
  --sizes 64,256 --pool-size 4000 model.init_from=runs/fpb-minilm-s42
# 8. FiQA-SA (the whole 819-row train split is the pool): frozen head to 512 labels; the TFNS run continued.
finpeft label curve fiqa-sa -o runs/curve-fiqa-head --methods frozen-head --strategies random,auto \
  --sizes 16,32,64,128,256,512
finpeft label curve fiqa-sa -o runs/curve-fiqa-tfnsinit --methods full --strategies random,auto --sizes 64,256 \
  model.init_from=runs/tfns-minilm-s42
# 9. FPB frozen head to 512 labels (resumes the 16-256 rows of a run of step 2's shape).
finpeft label curve fpb -o runs/curve-fpb-head-512 --methods frozen-head --strategies random,auto \
  --sizes 16,32,64,128,256,512
# 10. MPNet (bf16): FPB continuing one epoch of the TFNS recipe; TFNS continuing one epoch of the FPB recipe
#     (to 512 labels); MPNet's frozen head on TFNS. One thread per job (train.num_threads=1) in the study.
finpeft train recipes/best-tfns.yaml train.epochs=1 seed=42 -o runs/tfns-mpnet-1ep-s42
finpeft label curve fpb -o runs/curve-fpb-mpnet-tfnsinit --backbones mpnet-base --methods full \
  --strategies random,auto --sizes 64,256 model.init_from=runs/tfns-mpnet-1ep-s42 train.precision=bf16
finpeft train recipes/best-fpb.yaml train.epochs=1 seed=42 -o runs/fpb-mpnet-1ep-s42
finpeft label curve tfns -o runs/curve-tfns-mpnet-fpbinit --backbones mpnet-base --methods full \
  --strategies random,auto --sizes 64,256 --pool-size 4000 model.init_from=runs/fpb-mpnet-1ep-s42 train.precision=bf16
finpeft label curve tfns -o runs/curve-tfns-mpnet-fpbinit --backbones mpnet-base --methods full \
  --strategies auto --sizes 64,256,512 --pool-size 4000 model.init_from=runs/fpb-mpnet-1ep-s42 train.precision=bf16
finpeft label curve tfns -o runs/curve-tfns-mpnet-head --backbones mpnet-base --methods frozen-head \
  --strategies random,auto --pool-size 4000 --sizes 16,32,64,128,256,512
# 11. The TFNS tries of 2026-12-07 (docs: "Four tries at the last points"); the 4th lets the FPB run rank the
#     first round (--start-ranks) instead of the k-means cold start.
finpeft label curve tfns -o runs/curve-tfns-mpnet-fpbinit-6ep --backbones mpnet-base --methods full:train.epochs=6 \
  --strategies auto --sizes 64,256 --pool-size 4000 model.init_from=runs/fpb-mpnet-1ep-s42 train.precision=bf16
finpeft label curve tfns -o runs/curve-tfns-mpnet-fpbinit-lr2 --backbones mpnet-base --methods full:train.lr=2e-5 \
  --strategies auto --sizes 64,256 --pool-size 4000 model.init_from=runs/fpb-mpnet-1ep-s42 train.precision=bf16
finpeft label curve tfns -o runs/curve-tfns-mpnet-fpbinit-pool --backbones mpnet-base --methods full \
  --strategies auto --sizes 64,256 model.init_from=runs/fpb-mpnet-1ep-s42 train.precision=bf16
finpeft label curve tfns -o runs/curve-tfns-mpnet-fpbinit-ranked --backbones mpnet-base --methods full \
  --strategies auto --sizes 64,256,512 --pool-size 4000 --start-ranks \
  model.init_from=runs/fpb-mpnet-1ep-s42 train.precision=bf16
