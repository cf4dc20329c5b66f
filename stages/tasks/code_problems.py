"""The built-in code problems (``task=code``): small Python functions written for this project, with tests and a
reference solution each, at three difficulties — 1: one expression; 2: a loop or a condition; 3: a small
algorithm. Sized so that SmolLM2-135M solves some of the first kind. Each row: (difficulty, function name,
signature, description, reference body, tests). Which rows are held out is fixed (stages/tasks/code.py)."""

PROBLEMS = [
    # difficulty 1: one expression
    (1, "add", "add(a, b)", "returns the sum of a and b", "return a + b",
     ["add(2, 3) == 5", "add(-1, 1) == 0", "add(0, 0) == 0"]),
    (1, "square", "square(n)", "returns n multiplied by itself", "return n * n",
     ["square(3) == 9", "square(-4) == 16", "square(0) == 0"]),
    (1, "is_even", "is_even(n)", "returns True if the integer n is even, otherwise False", "return n % 2 == 0",
     ["is_even(4) is True", "is_even(7) is False", "is_even(0) is True"]),
    (1, "maximum", "maximum(numbers)", "returns the largest number in the non-empty list numbers",
     "return max(numbers)", ["maximum([1, 5, 3]) == 5", "maximum([-2, -9]) == -2", "maximum([7]) == 7"]),
    (1, "reverse_string", "reverse_string(s)", "returns the string s reversed", "return s[::-1]",
     ["reverse_string('abc') == 'cba'", "reverse_string('') == ''", "reverse_string('racecar') == 'racecar'"]),
    (1, "list_sum", "list_sum(numbers)", "returns the sum of the numbers in the list numbers (0 for an empty list)",
     "return sum(numbers)", ["list_sum([1, 2, 3]) == 6", "list_sum([]) == 0", "list_sum([-1, 1, 5]) == 5"]),
    (1, "first_char", "first_char(s)", "returns the first character of the non-empty string s", "return s[0]",
     ["first_char('hello') == 'h'", "first_char('x') == 'x'", "first_char('Zebra') == 'Z'"]),
    (1, "to_upper", "to_upper(s)", "returns the string s in upper case", "return s.upper()",
     ["to_upper('abc') == 'ABC'", "to_upper('Hi there') == 'HI THERE'", "to_upper('') == ''"]),
    (1, "absolute", "absolute(n)", "returns the absolute value of the number n", "return abs(n)",
     ["absolute(-5) == 5", "absolute(3) == 3", "absolute(0) == 0"]),
    (1, "length", "length(items)", "returns how many elements the list items has", "return len(items)",
     ["length([1, 2, 3]) == 3", "length([]) == 0", "length(['a']) == 1"]),
    (1, "double_all", "double_all(numbers)", "returns a new list with every number in numbers multiplied by 2",
     "return [2 * x for x in numbers]", ["double_all([1, 2, 3]) == [2, 4, 6]", "double_all([]) == []",
                                          "double_all([-1]) == [-2]"]),
    (1, "last_element", "last_element(items)", "returns the last element of the non-empty list items",
     "return items[-1]", ["last_element([1, 2, 3]) == 3", "last_element(['a']) == 'a'",
                          "last_element([0, None]) is None"]),
    # difficulty 2: a loop or a condition
    (2, "count_vowels", "count_vowels(s)", "returns how many vowels (a, e, i, o, u, upper or lower case) the string "
     "s contains", "return sum(c in 'aeiouAEIOU' for c in s)",
     ["count_vowels('hello') == 2", "count_vowels('xyz') == 0", "count_vowels('AEiou') == 5"]),
    (2, "factorial", "factorial(n)", "returns n! for an integer n >= 0 (factorial(0) is 1)",
     "result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result",
     ["factorial(0) == 1", "factorial(1) == 1", "factorial(5) == 120"]),
    (2, "is_palindrome", "is_palindrome(s)", "returns True if the string s reads the same forwards and backwards",
     "return s == s[::-1]", ["is_palindrome('level') is True", "is_palindrome('hello') is False",
                             "is_palindrome('') is True"]),
    (2, "count_positive", "count_positive(numbers)", "returns how many numbers in the list numbers are greater "
     "than 0", "return sum(1 for x in numbers if x > 0)",
     ["count_positive([1, -2, 3, 0]) == 2", "count_positive([]) == 0", "count_positive([-1, -5]) == 0"]),
    (2, "fizzbuzz", "fizzbuzz(n)", "returns 'FizzBuzz' if n is divisible by 15, 'Fizz' if by 3, 'Buzz' if by 5, "
     "else str(n)", "if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n        return 'Fizz'\n    "
     "if n % 5 == 0:\n        return 'Buzz'\n    return str(n)",
     ["fizzbuzz(15) == 'FizzBuzz'", "fizzbuzz(9) == 'Fizz'", "fizzbuzz(10) == 'Buzz'", "fizzbuzz(7) == '7'"]),
    (2, "evens_only", "evens_only(numbers)", "returns the even numbers of the list numbers, in order",
     "return [x for x in numbers if x % 2 == 0]",
     ["evens_only([1, 2, 3, 4]) == [2, 4]", "evens_only([]) == []", "evens_only([5, 7]) == []"]),
    (2, "sign", "sign(n)", "returns 1 if n is positive, -1 if n is negative and 0 if n is zero",
     "return (n > 0) - (n < 0)", ["sign(5) == 1", "sign(-3) == -1", "sign(0) == 0"]),
    (2, "min_max", "min_max(numbers)", "returns a tuple (smallest, largest) of the non-empty list numbers",
     "return (min(numbers), max(numbers))",
     ["min_max([3, 1, 2]) == (1, 3)", "min_max([5]) == (5, 5)", "min_max([-1, 4, 0]) == (-1, 4)"]),
    (2, "count_words", "count_words(s)", "returns the number of words in the string s (words are separated by "
     "whitespace)", "return len(s.split())",
     ["count_words('hello world') == 2", "count_words('') == 0", "count_words('  a b  c ') == 3"]),
    (2, "sum_of_digits", "sum_of_digits(n)", "returns the sum of the decimal digits of the integer n >= 0",
     "return sum(int(d) for d in str(n))", ["sum_of_digits(123) == 6", "sum_of_digits(0) == 0",
                                             "sum_of_digits(9999) == 36"]),
    (2, "power_of_two", "power_of_two(n)", "returns True if the integer n is a power of two (1, 2, 4, 8, ...)",
     "return n > 0 and n & (n - 1) == 0",
     ["power_of_two(8) is True", "power_of_two(6) is False", "power_of_two(1) is True", "power_of_two(0) is False"]),
    (2, "capitalize_words", "capitalize_words(s)", "returns s with the first letter of every space-separated word "
     "in upper case and the rest unchanged", "return ' '.join(w[:1].upper() + w[1:] for w in s.split(' '))",
     ["capitalize_words('hello world') == 'Hello World'", "capitalize_words('a') == 'A'",
      "capitalize_words('') == ''"]),
    # difficulty 3: a small algorithm
    (3, "fibonacci", "fibonacci(n)", "returns the n-th Fibonacci number, with fibonacci(0) == 0 and "
     "fibonacci(1) == 1", "a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
     ["fibonacci(0) == 0", "fibonacci(1) == 1", "fibonacci(10) == 55"]),
    (3, "is_prime", "is_prime(n)", "returns True if the integer n is a prime number",
     "if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            "
     "return False\n        i += 1\n    return True",
     ["is_prime(2) is True", "is_prime(15) is False", "is_prime(97) is True", "is_prime(1) is False"]),
    (3, "gcd", "gcd(a, b)", "returns the greatest common divisor of the positive integers a and b",
     "while b:\n        a, b = b, a % b\n    return a", ["gcd(12, 18) == 6", "gcd(7, 5) == 1", "gcd(9, 9) == 9"]),
    (3, "run_length", "run_length(s)", "returns the run-length encoding of s: each run of a repeated character "
     "as the character followed by its count, e.g. 'aaab' -> 'a3b1'",
     "out = ''\n    i = 0\n    while i < len(s):\n        j = i\n        while j < len(s) and s[j] == s[i]:\n"
     "            j += 1\n        out += s[i] + str(j - i)\n        i = j\n    return out",
     ["run_length('aaab') == 'a3b1'", "run_length('') == ''", "run_length('abc') == 'a1b1c1'"]),
    (3, "balanced", "balanced(s)", "returns True if the parentheses '(' and ')' in the string s are balanced",
     "depth = 0\n    for c in s:\n        depth += {'(': 1, ')': -1}.get(c, 0)\n        if depth < 0:\n"
     "            return False\n    return depth == 0",
     ["balanced('(())') is True", "balanced('(()') is False", "balanced(')(') is False", "balanced('') is True"]),
    (3, "anagrams", "anagrams(a, b)", "returns True if the strings a and b contain the same letters the same "
     "number of times", "return sorted(a) == sorted(b)",
     ["anagrams('listen', 'silent') is True", "anagrams('abc', 'abd') is False", "anagrams('', '') is True"]),
    (3, "second_largest", "second_largest(numbers)", "returns the second largest distinct value in numbers (a list "
     "with at least two distinct values)", "return sorted(set(numbers))[-2]",
     ["second_largest([1, 3, 2]) == 2", "second_largest([5, 5, 4]) == 4", "second_largest([-1, -2]) == -2"]),
    (3, "flatten", "flatten(lists)", "returns one list with the elements of every list in the list of lists "
     "lists, in order", "return [x for inner in lists for x in inner]",
     ["flatten([[1, 2], [3]]) == [1, 2, 3]", "flatten([]) == []", "flatten([[], ['a']]) == ['a']"]),
    (3, "char_counts", "char_counts(s)", "returns a dict mapping each character of s to how many times it occurs",
     "counts = {}\n    for c in s:\n        counts[c] = counts.get(c, 0) + 1\n    return counts",
     ["char_counts('abca') == {'a': 2, 'b': 1, 'c': 1}", "char_counts('') == {}"]),
    (3, "binary_string", "binary_string(n)", "returns the binary representation of the integer n >= 0 as a string "
     "without a prefix, e.g. 5 -> '101'", "return bin(n)[2:]",
     ["binary_string(5) == '101'", "binary_string(0) == '0'", "binary_string(8) == '1000'"]),
    (3, "merge_sorted", "merge_sorted(a, b)", "returns one sorted list with the elements of the sorted lists a and b",
     "return sorted(a + b)", ["merge_sorted([1, 3], [2, 4]) == [1, 2, 3, 4]", "merge_sorted([], [1]) == [1]",
                              "merge_sorted([], []) == []"]),
    (3, "unique_in_order", "unique_in_order(items)", "returns the elements of items without duplicates, keeping "
     "the first occurrence of each, in order", "seen = []\n    for x in items:\n        if x not in seen:\n"
     "            seen.append(x)\n    return seen",
     ["unique_in_order([1, 2, 1, 3]) == [1, 2, 3]", "unique_in_order([]) == []",
      "unique_in_order(['b', 'a', 'b']) == ['b', 'a']"]),
]
