"""`python -m flows.deploy --params params.yaml [--set k=v ...]`: register the mmops deployments
(see `mmops.orchestrate.deploy`)."""

from mmops.orchestrate.deploy import main

if __name__ == "__main__":
    main()
