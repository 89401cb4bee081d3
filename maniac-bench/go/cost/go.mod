module maniac-bench/cost

go 1.19
