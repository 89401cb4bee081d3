module maniac-bench/preempt

go 1.19
