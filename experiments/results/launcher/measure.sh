#!/bin/bash
export OMP_NUM_THREADS=1
cd /work/runs/launch
uptime > load-before.txt
/usr/bin/time -v dasvit compare A --random 3 --jobs 1 --set retrain.epochs=3 --no-progress > A.log 2> A.time
uptime >> load-before.txt
/usr/bin/time -v dasvit compare B --random 3 --jobs 2 --set retrain.epochs=3 --no-progress > B.log 2> B.time
uptime >> load-before.txt
