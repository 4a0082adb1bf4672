export OMP_NUM_THREADS=2
G="--device cpu --shape smollm2-135m --prompts 4 --group 4 --new 32 --micro-batch 16 --steps 3 --warmup 1 --runs cascadec-hf"
for i in 1 2; do
  for side in base new; do
    tree=/work/main; [ $side = base ] && tree=/work/main/build/main-tree
    (cd $tree && PYTHONPATH=$tree /usr/bin/time -f "$side wall %e user %U sys %S faults %R" python -m bench.grpo_vs_trl $G --out /tmp/abm-$side-$i.json 2>&1 | grep -E "cascadec-hf \||wall")
  done
done
