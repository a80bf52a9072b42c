#!/usr/bin/env bash
# Sharded grading under a real Slurm job array, checked against one unsharded `grade`.
#
# Not part of the test suite or CI (they have no Slurm). For a maintainer with a running Slurm
# whose jobs can run this clone (a single-node cluster is enough: munged, slurmctld and slurmd
# on localhost), as the user that grades (root, or one with unprivileged user namespaces):
#
#     bench/slurm_check.sh [WORKDIR]              # default WORKDIR: /tmp/slurm_check (wiped first)
#     SHARDS=3 CHAPTERS="01_tokenization 04_mlp" bench/slurm_check.sh
#
# What it does, following README.md ("Many students: shards on a batch engine") to the letter:
#  1. `release` a course directory with CHAPTERS; puts four downloads per chapter in
#     downloaded/<chapter>/archive/ (solvedN: solved, stubN: the untouched stub, wrongN: one
#     exercise returns twice its answer, unfinishedN: solved but the last exercise left as the
#     stub; ids picked so that every shard gets one); `nbgrader zip_collect`.
#  2. copies it twice: whole/ and sharded/ (same grading secret, same submissions).
#  3. for each chapter, takes the README's Slurm script and merge line out of README.md itself,
#     replaces only its paths (/shared/clone, /shared/tc-grading), its chapter and the array size
#     (--array=0-(SHARDS-1)), and submits them from WORKDIR/jobs exactly as the README says
#     (`sbatch --parsable grade.sh`, then the merge with --dependency=afterany); waits for them.
#  4. checks every array task and merge job exited 0, that each task took its shard from
#     SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, and that the shards together graded every
#     submission once. Then a shard that died: its result files are deleted, the merge must
#     fail, `sbatch --array=K grade.sh` alone must be refused, and the README's rerun
#     (`sbatch --array=K grade.sh --shard K/N`, then the merge line again) must complete.
#  5. runs one unsharded `grade --workers 2` on whole/ and compares: gradebook (every grade's
#     auto score and needs-manual-grade flag), the feedback pages (byte for byte), the result
#     files (all fields but timings), `nbgrader export` (the same rows: it lists students in the
#     order they entered the gradebook, which differs) and the class report's CSV. Any
#     difference fails the script (exit 1).
# It prints the wall time of the Slurm phase (submission to the last merge) and of the
# unsharded run. The job logs (slurm-<job>_<task>.out) stay in WORKDIR/jobs.
#
# A single-node Slurm on Debian 12 (slurm-wlm 22.05 and munge; checked 2026-12, as root, no
# systemd): /etc/slurm/slurm.conf with
#     ClusterName=local  SlurmctldHost=<hostname>  SlurmUser=slurm  AuthType=auth/munge
#     StateSaveLocation=/var/spool/slurmctld  SlurmdSpoolDir=/var/spool/slurmd
#     ProctrackType=proctrack/linuxproc  TaskPlugin=task/none
#     SelectType=select/cons_tres  SelectTypeParameters=CR_Core_Memory  DefMemPerCPU=1000
#     AccountingStorageType=accounting_storage/none  JobAcctGatherType=jobacct_gather/none
#     NodeName=<hostname> CPUs=2 RealMemory=<MB, below `slurmd -C`'s>  (the README's --mem=10G must fit)
#     PartitionName=debug Nodes=<hostname> Default=YES MaxTime=INFINITE State=UP
# (one setting a line), the spool folders made and owned by slurm, then
#     su -s /bin/sh munge -c /usr/sbin/munged; /usr/sbin/slurmctld; /usr/sbin/slurmd; sinfo
# On 2 CPUs the README's --cpus-per-task=2 runs one task at a time.
set -euo pipefail

CLONE="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/slurm_check}"
SHARDS="${SHARDS:-3}"
CHAPTERS="${CHAPTERS:-01_tokenization 04_mlp}"
PY="$CLONE/.venv/bin/python"

command -v sbatch >/dev/null || { echo "no sbatch on the PATH: this check needs Slurm" >&2; exit 2; }
sinfo -h >/dev/null || { echo "sinfo failed: is slurmctld running?" >&2; exit 2; }
[ -x "$PY" ] || { echo "no $PY: run setup.sh first" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK/jobs"
COURSE="$WORK/course"
chapter_args=()
for c in $CHAPTERS; do chapter_args+=(--chapter "$c"); done

echo "== release and collect ($CHAPTERS)"
. "$CLONE/.venv/bin/activate"
python -m solutions.grading release "$COURSE" "${chapter_args[@]}"
python - "$COURSE" "$SHARDS" $CHAPTERS <<'EOF'
import sys
from pathlib import Path

import nbformat

from solutions.checks import specs_for
from solutions.grading import batch
from solutions.notebooks import read_notebook, solved_notebook

course, shards = Path(sys.argv[1]), int(sys.argv[2])
for chapter in sys.argv[3:]:
    released = read_notebook(course / "release" / chapter / f"{chapter}.ipynb")
    cells = lambda nb: {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    specs = specs_for(chapter)
    solved = solved_notebook(released, chapter)
    wrong = nbformat.from_dict(solved)  # the first function exercise returns twice its answer
    name = next(s.name for s in specs if not isinstance(s.reference, type))
    cells(wrong)[name].source += (f"\n\n_right_{name} = {name}\n\ndef {name}(*args, **kwargs):\n"
                                  f"    return 2 * _right_{name}(*args, **kwargs)\n")
    unfinished = nbformat.from_dict(solved)
    cells(unfinished)[specs[-1].name].source = cells(released)[specs[-1].name].source
    archive = course / "downloaded" / chapter / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    # student ids chosen so that the first SHARDS of them fall in different shards (the shard is a
    # hash of chapter and student: with four students, some shard could otherwise be empty)
    used, names = set(), []
    for role in ("solved", "stub", "wrong", "unfinished"):
        candidates = [f"{role}{i}" for i in range(1, 200)]
        pick = next((s for s in candidates if batch.shard_of(s, chapter, shards) not in used), candidates[0])
        used.add(batch.shard_of(pick, chapter, shards))
        names.append(pick)
    for student, nb in zip(names, (solved, released, wrong, unfinished)):
        nbformat.write(nb, archive / f"{student}_1234_5678_{chapter}.ipynb")
    print(f"{chapter}: {', '.join(f'{s} (shard {batch.shard_of(s, chapter, shards)})' for s in names)}; "
          f"wrong in {name}, unfinished {specs[-1].name}")
EOF
(cd "$COURSE" && for c in $CHAPTERS; do nbgrader zip_collect "$c" >"$WORK/collect-$c.log" 2>&1; done)
cp -a "$COURSE" "$WORK/whole"
cp -a "$COURSE" "$WORK/sharded"

echo "== Slurm: the README's script, $SHARDS shards per chapter"
# the README's two blocks after "Slurm (`sbatch grade.sh`": the array script, then the merge lines
awk '/^Slurm \(`sbatch grade.sh`/ {on=1} on && /^```bash/ {n++; inb=1; next} on && /^```/ {inb=0; if (n==2) exit; next}
     on && inb {print > (n==1 ? "'"$WORK"'/jobs/readme-grade.sh" : "'"$WORK"'/jobs/readme-submit.sh")}' "$CLONE/README.md"
[ -s "$WORK/jobs/readme-grade.sh" ] && [ -s "$WORK/jobs/readme-submit.sh" ] \
  || { echo "could not find the Slurm script in README.md" >&2; exit 2; }
subst() { sed -e "s#/shared/clone#$CLONE#g" -e "s#/shared/tc-grading#$WORK/sharded#g" -e "s#04_mlp#$1#g" \
              -e "s#--array=0-9#--array=0-$((SHARDS - 1))#" -e "s#/10\b#/$SHARDS#g"; }
merge_ids=(); array_ids=()
start=$(date +%s)
cd "$WORK/jobs"
for c in $CHAPTERS; do
  subst "$c" <readme-grade.sh >grade.sh
  cp grade.sh "grade-$c.sh"
  # the merge lines, with their `sbatch ... grade.sh` run here; remember the two job ids
  subst "$c" <readme-submit.sh >"submit-$c.sh"
  echo 'echo "$jobid" >array.id' >>"submit-$c.sh"
  out=$(bash -e "submit-$c.sh")  # the merge's sbatch prints "Submitted batch job N"
  array_ids+=("$(cat array.id)")
  merge_ids+=("$(echo "$out" | awk '/Submitted batch job/ {print $4}')")
  echo "$c: array job ${array_ids[-1]}, merge job ${merge_ids[-1]}"
done
while [ -n "$(squeue -h -j "$(IFS=,; echo "${array_ids[*]},${merge_ids[*]}")" 2>/dev/null)" ]; do sleep 5; done
slurm_s=$(( $(date +%s) - start ))
echo "Slurm phase: ${slurm_s} s"

fail=0
for id in "${array_ids[@]}" "${merge_ids[@]}"; do
  # one line per array task; MinJobAge (300 s by default) keeps finished jobs this long
  while read -r line; do
    state=$(grep -o 'JobId=[0-9]*\( ArrayJobId=[0-9]* ArrayTaskId=[0-9]*\)\?\|JobState=[A-Z_]*\|ExitCode=[0-9:]*' <<<"$line" | tr '\n' ' ')
    echo "  $state"
    grep -q 'JobState=COMPLETED .*ExitCode=0:0' <<<"$state" || fail=1
  done < <(scontrol -o show job "$id")
done
grep -H -E "^Sandbox: |^[0-9]{2}_[a-z]+: " slurm-*.out | sed 's/^/  /'
for c in $CHAPTERS; do  # each shard from the array's variables, every submission graded once
  from_env=$(grep -l "shard [0-9]* of $SHARDS (SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)" slurm-*_*.out | wc -l)
  graded=$(grep -h "^$c: [0-9]* graded" slurm-*_*.out | awk '{n += $2} END {print n + 0}')
  echo "$c: $graded submission(s) graded by the shards"
  [ "$graded" = 4 ] || { echo "$c: the shards graded $graded submissions, not 4" >&2; fail=1; }
done
[ "$from_env" = $((SHARDS * $(wc -w <<<"$CHAPTERS"))) ] \
  || { echo "$from_env array task(s) took their shard from SLURM_ARRAY_TASK_ID/COUNT" >&2; fail=1; }

# a shard that died: its results are lost; the README's rerun of that shard alone, then the merge
c=${CHAPTERS##* }; k=$(( SHARDS > 1 ? 1 : 0 ))
echo "== rerun: shard $k of $c loses its results; sbatch --array=$k grade.sh --shard $k/$SHARDS, merge again"
lost=$(python -c "import sys; from solutions.grading import batch
print(' '.join(s for s in sys.argv[3:] if batch.shard_of(s, sys.argv[1], int(sys.argv[2])) == $k))" \
       "$c" "$SHARDS" $(cd "$WORK/sharded/graded/$c" && ls | sed 's/\.json$//'))
for s in $lost; do rm "$WORK/sharded/graded/$c/$s.json"; done
if python -m solutions.grading grade "$WORK/sharded" --chapter "$c" --merge >merge-lost.log 2>&1; then
  echo "the merge did not notice the lost results of: $lost" >&2; fail=1
else
  echo "  merge without them: exit 1: $(tail -1 merge-lost.log)"
fi
cp "grade-$c.sh" grade.sh
alone=$(sbatch --parsable --array=$k grade.sh)  # a one-task array alone: refused, grades nobody
rerun=$(sbatch --parsable --array=$k grade.sh --shard "$k/$SHARDS")
merge=$(sed -n 's/^sbatch --dependency=afterany:\$jobid /sbatch --parsable --dependency=afterany:'"$rerun"' /p' "submit-$c.sh" | bash)
while [ -n "$(squeue -h -j "$alone,$rerun,$merge" 2>/dev/null)" ]; do sleep 5; done
state() { scontrol -o show job "$1" | grep -o 'JobState=[A-Z_]*\|ExitCode=[0-9:]*' | tr '\n' ' '; }
echo "  sbatch --array=$k grade.sh: $(state "$alone")$(grep -o 'one-task Slurm array' "slurm-${alone}_$k.out" | head -1)"
echo "  sbatch --array=$k grade.sh --shard $k/$SHARDS: $(state "$rerun")$(grep -h "^$c: " "slurm-${rerun}_$k.out")"
echo "  merge: $(state "$merge")$(cat "slurm-$merge.out")"
grep -q 'one-task Slurm array' "slurm-${alone}_$k.out" || fail=1
state "$rerun" | grep -q 'COMPLETED ExitCode=0:0' && state "$merge" | grep -q 'COMPLETED ExitCode=0:0' || fail=1
grep -q "^$c: $(wc -w <<<"$lost") graded" "slurm-${rerun}_$k.out" || { echo "the rerun did not grade: $lost" >&2; fail=1; }
cd "$WORK"

echo "== one unsharded grade"
start=$(date +%s)
python -m solutions.grading grade "$WORK/whole" "${chapter_args[@]}" --workers 2 >"$WORK/whole.log" 2>&1 \
  || { echo "unsharded grade failed:"; tail -20 "$WORK/whole.log"; exit 1; }
whole_s=$(( $(date +%s) - start ))
grep -E '^[0-9]{2}_[a-z]+: ' "$WORK/whole.log"
echo "Unsharded grade: ${whole_s} s"

echo "== compare"
for d in whole sharded; do
  (cd "$WORK/$d" && nbgrader export --to "$WORK/grades-$d.csv" >/dev/null 2>&1)
  python -m solutions.grading report "$WORK/$d" "${chapter_args[@]}" --out "$WORK/report-$d" >/dev/null
done
python - "$WORK" $CHAPTERS <<'EOF' || fail=1
import json
import sys
from pathlib import Path

from nbgrader.api import Gradebook

from solutions.grading import batch

work, chapters = Path(sys.argv[1]), sys.argv[2:]
batch._tools_on_path()


def gradebook(course):
    rows = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for chapter in chapters:
            for sub in gb.assignment_submissions(chapter):
                for grade in sub.notebooks[0].grades:
                    rows[(chapter, sub.student_id, grade.name)] = (grade.auto_score, grade.needs_manual_grade)
    return rows


TIMING = ("seconds", "elapsed", "duration", "time_s", "wall")


def strip(value):  # a result without its timings (which differ between any two runs)
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


whole, sharded = work / "whole", work / "sharded"
problems = []
a, b = gradebook(whole), gradebook(sharded)
print(f"gradebook: {len(a)} grades unsharded, {len(b)} merged")
if not a or a != b:
    problems.append(f"gradebooks differ: {sorted(set(a.items()) ^ set(b.items()))[:10]}")
pages = sorted(p.relative_to(whole) for p in (whole / "feedback").rglob("*.html"))
print(f"feedback pages: {len(pages)}")
if not pages or pages != sorted(p.relative_to(sharded) for p in (sharded / "feedback").rglob("*.html")):
    problems.append("not the same feedback pages")
problems += [f"feedback differs: {p}" for p in pages if (sharded / p).exists()
             and (whole / p).read_bytes() != (sharded / p).read_bytes()]
results = sorted(p.relative_to(whole) for p in (whole / "graded").rglob("*.json"))
print(f"result files: {len(results)}")
if results != sorted(p.relative_to(sharded) for p in (sharded / "graded").rglob("*.json")):
    problems.append("not the same result files")
for p in results:
    x, y = (strip(json.loads((d / p).read_text())) for d in (whole, sharded))
    if x != y:
        problems.append(f"result differs: {p}: {[k for k in x if x.get(k) != y.get(k)]}")
# nbgrader export lists students in the order they entered the gradebook: as they finished in
# the unsharded run (--workers 2), by name in the merge. The same rows, in either order.
x, y = ((work / f"grades-{d}.csv").read_text().splitlines() for d in ("whole", "sharded"))
if not x or x[0] != y[0] or sorted(x[1:]) != sorted(y[1:]):
    problems.append("grades.csv: not the same rows")
print(f"grades.csv: {len(x) - 1} rows" + (", same order" if x == y else ", the same rows in another order"))
for c in chapters:
    x, y = (work / f"report-{d}" / f"{c}.csv" for d in ("whole", "sharded"))
    if not x.exists() or x.read_text() != y.read_text():
        problems.append(f"report {c}.csv differs (or is missing)")
scores = {}
for p in results:
    r = json.loads((whole / p).read_text())
    scores[f"{p.parent.name}/{p.stem}"] = f"{r['score']:g}/{r['max_score']:g} {r['status']}"
for k, v in sorted(scores.items()):
    print(f"  {k}: {v}")
print("\n".join(problems) if problems else "merged == unsharded: gradebook, feedback, results, grades.csv, report")
sys.exit(1 if problems else 0)
EOF
echo "Slurm phase ${slurm_s} s, unsharded ${whole_s} s"
exit $fail
