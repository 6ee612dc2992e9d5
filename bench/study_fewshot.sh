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
