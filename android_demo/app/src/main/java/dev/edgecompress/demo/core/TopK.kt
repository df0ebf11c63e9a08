package dev.edgecompress.demo.core

/** The k highest (index, score) pairs, ties broken by the lower index (as in Python). */
object TopK {
    fun of(scores: DoubleArray, k: Int): List<Pair<Int, Double>> =
        scores.indices.sortedWith(compareBy<Int>({ -scores[it] }, { it })).take(k).map { it to scores[it] }

    fun of(scores: FloatArray, k: Int): List<Pair<Int, Double>> =
        of(DoubleArray(scores.size) { scores[it].toDouble() }, k)
}
