SP=/tmp/venv/lib/python3.12/site-packages
cp .gpu2/stub_env_hook.py $SP/ && echo "import stub_env_hook" > $SP/aa_stub_numpy1.pth
rm -rf /tmp/gpu/model_repository-torch/*/1/__pycache__
