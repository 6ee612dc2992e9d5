#!/usr/bin/env bash
# MPNet accuracy study (issue 19), run from a separate clone so the working tree can change meanwhile.
# One heavy job at a time on 2 cores. Every run: full fine-tune, bf16 autocast, max_length 160 (truncates no
# FPB/TFNS/FiQA-SA sentence), batch 16, warmup 10 %, early stopping on valid macro-F1 (patience 2).
set -u
cd "$(dirname "$0")/.."
. .venv/bin/activate 2>/dev/null || true
export FINPEFT_DATA_DIR=${FINPEFT_DATA_DIR:-../shared/datasets}
R=runs/mpnet
mkdir -p $R
common="model.backbone=mpnet-base model.max_length=160 train.precision=bf16 train.report_to=[] train.progress_bar=false"
run() { # name, overrides...
  local name=$1; shift
  [ -f $R/$name/metrics.json ] && return 0
  echo "$(date +%T) start $name" >> $R/log.txt
  finpeft train $common "$@" --output $R/$name --overwrite > $R/$name.log 2>&1
  echo "$(date +%T) done $name rc=$? $(python -c "import json;m=json.load(open('$R/$name/metrics.json'));print(m['accuracy'],m['macro_f1'],m.get('best_valid_macro_f1'),m['train_seconds'])" 2>/dev/null)" >> $R/log.txt
}
# 1. FPB, seed 42: two learning rates, chosen on the valid split (best_valid_macro_f1)
run fpb-lr2e-5-s42 data.dataset=fpb train.lr=2e-5 train.epochs=2 seed=42
run fpb-lr5e-5-s42 data.dataset=fpb train.lr=5e-5 train.epochs=2 seed=42
LR=$(python - <<'PY'
import json
v={lr: json.load(open(f"runs/mpnet/fpb-lr{lr}-s42/metrics.json"))["best_valid_macro_f1"] for lr in ("2e-5","5e-5")}
print(max(v, key=v.get))
PY
)
echo "$(date +%T) chosen lr $LR (valid macro-F1)" >> $R/log.txt
for s in 43 44; do run fpb-lr$LR-s$s data.dataset=fpb train.lr=$LR train.epochs=2 seed=$s; done
# 2. FiQA-SA (small): same lr, 3 seeds, 4 epochs
for s in 42 43 44; do run fiqa-lr$LR-s$s data.dataset=fiqa-sa train.lr=$LR train.epochs=4 seed=$s; done
# 3. TFNS: same lr, 1 epoch (time)
for s in 42 43 44; do run tfns-lr$LR-s$s data.dataset=tfns train.lr=$LR train.epochs=1 seed=$s; done
# 4. TFNS, two epochs (valid macro-F1 picked them over step 3 for every seed; shipped as recipes/best-tfns.yaml)
for s in 42 43 44; do run tfns_2ep-lr$LR-s$s data.dataset=tfns train.lr=$LR train.epochs=2 seed=$s; done
# 5. TFNS, three epochs (valid picked them over step 4 for every seed; shipped as recipes/best-tfns.yaml)
for s in 42 43 44; do run tfns_3ep-lr$LR-s$s data.dataset=tfns train.lr=$LR train.epochs=3 seed=$s; done
# 6. FPB with an exponential moving average of the weights (decay fixed at 0.995 before any run)
for s in 42 43 44; do run fpb-ema995-s$s data.dataset=fpb train.lr=$LR train.epochs=2 train.ema_decay=0.995 seed=$s; done
# 7. Intermediate-task transfer (STILTs): FiQA-SA and FPB starting from the three-epoch TFNS model of seed 43
#    (one fixed intermediate model; the seed varies the second fine-tune). The 2026-12-06 runs passed its model/
#    dir as model.backbone, which loads the same weights as model.init_from does.
for s in 42 43 44; do run fiqa-from-tfns43-s$s data.dataset=fiqa-sa train.lr=$LR train.epochs=4 seed=$s \
  model.init_from=$R/tfns_3ep-lr$LR-s43; done
for s in 42 43 44; do run fpb-from-tfns43-s$s data.dataset=fpb train.lr=$LR train.epochs=2 seed=$s \
  model.init_from=$R/tfns_3ep-lr$LR-s43; done
# 8. LoRA on MPNet (r 16, alpha 32 on q,k,v,o + FFN, head in full; lr 5e-4, 4 epochs: settings fixed before any
#    run) on FPB and FiQA-SA, 3 seeds; DoRA with the same settings on FPB, seed 42 (2.1x LoRA's time). The
#    2026-12-06 runs passed these overrides to recipes/best-fpb.yaml, which sets the same common options.
lora="method.name=lora method.r=16 method.alpha=32 train.lr=5e-4 train.epochs=4"
for s in 42 43 44; do run fpb-lora16-s$s data.dataset=fpb $lora seed=$s; done
run fpb-dora16-s42 data.dataset=fpb ${lora/name=lora/name=dora} seed=42
for s in 42 43 44; do run fiqa-lora16-s$s data.dataset=fiqa-sa $lora seed=$s; done
# 9. finpeft tune over lr and epochs of the FPB full fine-tune (seed 42, 3 trials), then the best trial's
#    setting (lr 3.65e-5, 4 epochs on 2026-12-06) on seeds 43/44
[ -f runs/tune-mpnet-fpb/best.json ] || finpeft tune recipes/tune-mpnet-fpb.yaml --trials 3 -o runs/tune-mpnet-fpb \
  > runs/tune-mpnet-fpb.log 2>&1
for s in 43 44; do run fpb-tuned-s$s data.dataset=fpb train.lr=3.65e-5 train.epochs=4 seed=$s; done
# 10. Domain-adaptive MLM of MPNet on 30,000 fin-news headlines (every FPB/TFNS/FiQA-SA text removed; one epoch,
#     bf16, ~27 min once), then FPB (2 epochs), FiQA-SA (4 epochs) and TFNS (3 epochs) on it, 3 seeds each;
#     FiQA-SA from the TFNS model of seed 42 (intermediate-task transfer on the adapted encoder), 3 seeds. The 2026-12-07
#     runs passed these overrides to recipes/best-{fpb,tfns,fiqa-sa}.yaml, which set the same common options.
D=runs/dapt-mpnet-fin-news
[ -f $D/pretrain.json ] || finpeft pretrain objective=mlm backbone=mpnet-base max_texts=30000 train.precision=bf16 \
  --output $D --overwrite > $D.log 2>&1
for s in 42 43 44; do run fpb-dapt-s$s data.dataset=fpb train.lr=$LR train.epochs=2 model.backbone=$D seed=$s; done
for s in 42 43 44; do run fiqa-dapt-s$s data.dataset=fiqa-sa train.lr=$LR train.epochs=4 model.backbone=$D seed=$s; done
for s in 42 43 44; do run tfns-dapt-s$s data.dataset=tfns train.lr=$LR train.epochs=3 model.backbone=$D seed=$s; done
for s in 42 43 44; do run fiqa-dapt-from-tfns42-s$s data.dataset=fiqa-sa train.lr=$LR train.epochs=4 model.backbone=$D \
  model.init_from=$R/tfns-dapt-s42 seed=$s; done
echo "$(date +%T) study done" >> $R/log.txt
