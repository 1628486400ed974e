import subprocess
import sys


def test_factory_imports_neither_airflow_nor_langgraph():
    code = (
        "import sys, airflow_provider_orchestra.factory\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'langgraph'})\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
