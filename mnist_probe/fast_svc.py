"""FastSVC: scikit-learn's SVC with its RBF decision function computed by BLAS. A module of its own,
importing scikit-learn only: the workers of a parallel fit (CalibratedClassifierCV's n_jobs) import it
to unpickle the estimator, and would otherwise pay for torch and Lightning first."""

import numpy as np
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.svm import SVC


class FastSVC(SVC):
    """scikit-learn's SVC, fitted by libsvm as ever, whose RBF decision function on dense inputs is
    computed by BLAS: the kernel of a block of rows against every support vector as one matrix
    product (sklearn.metrics.pairwise.rbf_kernel), then libsvm's one-vs-one sums. libsvm evaluates
    the kernel row by row, bound by memory (make bench times both). The same decision values to
    rounding; predict_proba (calibration) and decision_function go through it, fit and the other
    kernels are SVC's own."""

    BLOCK = 2000  # rows per kernel block: 2000 × n_SV float64 (61 MB for 3,807 support vectors)

    def _dense_decision_function(self, X):  # noqa: N803 - called by SVC on validated float64 X
        classes = len(self.classes_)
        if self.kernel != "rbf" or classes < 3 or self._impl != "c_svc":
            return super()._dense_decision_function(X)
        bounds = np.cumsum([0, *self._n_support])
        of = [slice(bounds[c], bounds[c + 1]) for c in range(classes)]  # class c's support vectors
        coef, pairs = self._dual_coef_, [(i, j) for i in range(classes) for j in range(i + 1, classes)]
        out = np.empty((len(X), len(pairs)))
        for start in range(0, len(X), self.BLOCK):
            rows = slice(start, start + self.BLOCK)
            k = rbf_kernel(X[rows], self.support_vectors_, gamma=self._gamma)
            for p, (i, j) in enumerate(pairs):  # libsvm's pair (i, j): class i's coefficients in row j-1
                both = k[:, of[i]] @ coef[j - 1, of[i]] + k[:, of[j]] @ coef[i, of[j]]
                out[rows, p] = both + self._intercept_[p]
        return out
