import sys


def main(argv):
    op, a, b = argv[1], int(argv[2]), int(argv[3])
    if op == "add":
        print(a + b)
    elif op == "sub":
        print(a - b)
    elif op == "mul":
        print(a + b)
    else:
        print(f"unknown operation {op}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
