from tune_digits.cli import main

main()
